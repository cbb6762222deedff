//! Coarse access with casbin: may this caller read this product at all?
//!
//! The model (`policies/access.conf`) is RBAC with domains and deny-overrides-allow. The
//! policy (`policies/access.csv`) has two kinds of lines:
//!
//! ```text
//! p, <subject>, <domain|*>, <product id or pattern>, read, allow|deny
//! g, <principal or role:name>, role:<name>, <domain|*>
//! ```
//!
//! Lines are validated here, with file and line in every error, before casbin sees them:
//! casbin itself accepts any string, so a misspelt `Allow` or an unknown product would
//! otherwise match nothing, silently.
//!
//! For the shipped model, decisions are made over the lines indexed by product (see
//! [`crate::lines`]) rather than by casbin's matcher on every line; casbin still expands the
//! `g` roles, and decides for any other model.
//!
//! There is no decision cache: every policy version gets a fresh, uncached `Enforcer`.
//! casbin-rs's `CachedEnforcer` keeps decisions across `load_policy`, so a revocation could
//! go unnoticed (`tests/decision_caches.rs`); decisions are made once per (caller, product)
//! per query anyway.

use casbin::function_map::{OperatorFunction, key_match};
use casbin::rhai::Dynamic;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi, Model, RbacApi};
use meshgate_catalog::Catalog;

use crate::error::LoadError;
use crate::lines::{self, LineIndex};
use crate::principal::Principal;
use crate::subjects::{Subject, SubjectSet};

/// The only action a consumer has on a product.
pub const READ: &str = "read";

/// A loaded, validated casbin enforcer.
pub struct AccessControl {
    /// The `g` roles, and with another model than the shipped one, the decisions.
    enforcer: Enforcer,
    /// The `p` lines indexed by product, when the model is the shipped one: the decisions.
    index: Option<LineIndex>,
    rules: usize,
    /// The deny lines under the effect "allow unless a deny line matches", when the model's
    /// effect is deny-overrides-allow: grants are then admitted without loading them into
    /// casbin (see [`AccessControl::denies`]).
    denials: Option<DenyCheck>,
    /// Per domain, the roles a `g` line grants in that domain alone (not `*`): the roles
    /// of the domain, whose holders global rules count as its members.
    domain_roles: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

/// The files' deny lines alone: under "allow unless a deny line matches" an allow line
/// cannot change the answer, and casbin evaluates its matcher on every line it holds, so
/// leaving the allow lines out (one or more per product in a large mesh) keeps a grant's
/// admission independent of the mesh's size.
enum DenyCheck {
    /// No deny line: nothing is denied.
    Nothing,
    /// The shipped model, the files' lines alone: the index's deny lines answer.
    Indexed,
    Lines(Box<Enforcer>),
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// The effect of the shipped model, `policies/access.conf`, as casbin stores it (`p.eft`
/// escaped to `p_eft`), without spaces.
const DENY_OVERRIDES: &str = "some(where(p_eft==allow))&&!some(where(p_eft==deny))";

/// `subjectIn(r.sub, p.sub)`: the request's subject set (see [`SubjectSet`]) contains the
/// rule's subject, or the rule's subject is `*`.
fn subject_in(request: Dynamic, rule: Dynamic) -> Dynamic {
    let (Some(request), Some(rule)) = (
        request.into_immutable_string().ok(),
        rule.into_immutable_string().ok(),
    ) else {
        return false.into();
    };
    lines::subject_in(&request, &rule).into()
}

/// Whether `model` is the shipped one (request, policy, matcher and effect), whose
/// decisions [`LineIndex`] makes without casbin's matcher.
fn is_shipped(model: &DefaultModel) -> bool {
    let model = model.get_model();
    let assertion = |section: &str| model.get(section).and_then(|s| s.get(section));
    let tokens = |section: &str| assertion(section).map(|a| a.tokens.clone());
    let text = |section: &str| assertion(section).map(|a| a.value.replace(char::is_whitespace, ""));
    tokens("r").is_some_and(|t| t == lines::REQUEST)
        && tokens("p").is_some_and(|t| t == lines::POLICY)
        && text("m").as_deref() == Some(lines::MATCHER)
        && text("e").as_deref() == Some(DENY_OVERRIDES)
}

impl AccessControl {
    /// Build the enforcer from the model text and the policy lines.
    pub async fn load(
        model_file: &str,
        model_text: &str,
        rules_file: &str,
        rules_text: &str,
        catalog: &Catalog,
    ) -> Result<Self, LoadError> {
        let sources = Sources {
            model_file,
            model_text,
            rules_file,
            rules_text,
        };
        Self::build(&sources, catalog, Vec::new(), true).await
    }

    /// Whether [`AccessControl::denies`] answers (the model is deny-overrides-allow).
    pub fn checks_denials(&self) -> bool {
        self.denials.is_some()
    }

    /// Does a deny line of the files match this request? `None` when the model's effect is
    /// not deny-overrides-allow, so the question does not decide a grant's admission.
    pub fn denies(
        &self,
        subjects: &SubjectSet,
        domain: &str,
        product: &str,
    ) -> Option<Result<bool, String>> {
        self.denials.as_ref().map(|denials| match denials {
            DenyCheck::Nothing => Ok(false),
            // Built only beside an index; were it missing, deny rather than admit.
            DenyCheck::Indexed => Ok(self.index.as_ref().is_none_or(|index| {
                index
                    .matched(&subjects.casbin_encoding(), domain, product, READ)
                    .deny
            })),
            DenyCheck::Lines(denials) => denials
                .enforce((subjects.casbin_encoding(), domain, product, READ))
                .map(|allowed| !allowed)
                .map_err(|e| e.to_string()),
        })
    }

    /// [`AccessControl::load`] with `extra` policy lines (the grants in force, see
    /// `grants.rs`) before the files' lines, and no deny-only check.
    pub(crate) async fn load_with(
        sources: &crate::PolicySources,
        catalog: &Catalog,
        extra: Vec<Vec<String>>,
    ) -> Result<Self, LoadError> {
        let sources = Sources {
            model_file: &sources.access_model.name,
            model_text: &sources.access_model.text,
            rules_file: &sources.access_rules.name,
            rules_text: &sources.access_rules.text,
        };
        Self::build(&sources, catalog, extra, false).await
    }

    /// The model and the lines parsed once; with `with_denials`, also the deny-only check.
    async fn build(
        sources: &Sources<'_>,
        catalog: &Catalog,
        extra: Vec<Vec<String>>,
        with_denials: bool,
    ) -> Result<Self, LoadError> {
        let model = DefaultModel::from_str(sources.model_text)
            .await
            .map_err(|e| {
                LoadError::new(
                    sources.model_file,
                    None,
                    None,
                    format!("invalid casbin model: {e}"),
                )
            })?;
        let (policies, groupings) = parse_rules(sources.rules_file, sources.rules_text, catalog)?;
        let rules = policies.len() + groupings.len();
        let mut domain_roles: std::collections::BTreeMap<_, std::collections::BTreeSet<_>> =
            Default::default();
        for line in &groupings {
            if let [_, role, domain] = line.as_slice()
                && domain != "*"
                && let Some(role) = role.strip_prefix("role:")
            {
                domain_roles
                    .entry(domain.clone())
                    .or_default()
                    .insert(role.to_string());
            }
        }
        // With deny-overrides-allow, a grant (one allow line) admits exactly the callers no
        // deny line matches. Knowing that from the files' lines alone keeps resolution
        // independent of how many grants are in force; casbin evaluates its matcher on every
        // line, so loading the grants into it costs time linear in their number.
        let effect = model
            .get_model()
            .get("e")
            .and_then(|section| section.get("e"))
            .map(|assertion| assertion.value.replace(char::is_whitespace, ""));
        let deny_lines: Vec<Vec<String>> = policies
            .iter()
            .filter(|line| line.last().is_some_and(|effect| effect == "deny"))
            .cloned()
            .collect();
        let files_alone = extra.is_empty();
        // casbin's add_policies adds nothing when one line already exists, so a grant line
        // equal to a file's line must not reach it twice.
        let mut seen = std::collections::HashSet::new();
        let mut lines: Vec<Vec<String>> = extra
            .into_iter()
            .chain(policies)
            .filter(|line| seen.insert(line.clone()))
            .collect();
        // With the index deciding, casbin holds the `g` lines only (it expands roles).
        let index = is_shipped(&model).then(|| LineIndex::new(&lines)).flatten();
        if index.is_some() {
            lines.clear();
        }
        let denials = if with_denials && effect.as_deref() == Some(DENY_OVERRIDES) {
            if deny_lines.is_empty() {
                Some(DenyCheck::Nothing)
            } else if index.is_some() && files_alone {
                Some(DenyCheck::Indexed)
            } else {
                let mut deny_model = model.clone();
                // casbin knows a fixed set of effects; this one allows unless a deny line
                // matches.
                deny_model.add_def("e", "e", "!some(where (p.eft == deny))");
                let check = enforcer(sources, deny_model, deny_lines, groupings.clone()).await?;
                Some(DenyCheck::Lines(Box::new(check)))
            }
        } else {
            None
        };
        let enforcer = enforcer(sources, model, lines, groupings).await?;
        let access = Self {
            enforcer,
            index,
            rules,
            denials,
            domain_roles,
        };
        // A model that cannot evaluate our request shape must fail now, not on the first query.
        access
            .enforce(
                &SubjectSet {
                    id: "probe".into(),
                    roles: Default::default(),
                },
                "probe",
                "probe.probe",
            )
            .map_err(|e| {
                LoadError::new(
                    sources.model_file,
                    None,
                    None,
                    format!("the model cannot evaluate (sub, dom, obj, act) requests: {e}"),
                )
            })?;
        Ok(access)
    }

    /// The caller's subject set in a product domain: id, roles from authentication, and
    /// roles (transitively) from `g` rules for the id and each of those roles.
    pub fn subjects(&self, principal: &Principal, domain: &str) -> SubjectSet {
        let mut roles: std::collections::BTreeSet<String> = principal.roles().clone();
        let mut names: Vec<String> = vec![principal.id().to_string()];
        names.extend(principal.roles().iter().map(|r| format!("role:{r}")));
        for name in names {
            for role in self
                .enforcer
                .get_implicit_roles_for_user(&name, Some(domain))
            {
                if let Some(role) = role.strip_prefix("role:") {
                    roles.insert(role.to_string());
                }
            }
        }
        SubjectSet {
            id: principal.id().to_string(),
            roles,
        }
    }

    /// Casbin's decision for `read` on a product.
    pub fn enforce(
        &self,
        subjects: &SubjectSet,
        domain: &str,
        product: &str,
    ) -> Result<bool, String> {
        if let Some(index) = &self.index {
            let matched = index.matched(&subjects.casbin_encoding(), domain, product, READ);
            return Ok(matched.allow && !matched.deny);
        }
        self.enforcer
            .enforce((subjects.casbin_encoding(), domain, product, READ))
            .map_err(|e| e.to_string())
    }

    /// Whether decisions are made over the indexed lines (the shipped model) rather than by
    /// casbin's matcher.
    pub fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// The roles `g` lines grant in `domain` alone (see [`AccessControl`]'s field).
    pub fn domain_roles(&self, domain: &str) -> Option<&std::collections::BTreeSet<String>> {
        self.domain_roles.get(domain)
    }

    pub fn rule_count(&self) -> usize {
        self.rules
    }
}

/// Where the access policy comes from, for building enforcers and naming files in errors.
struct Sources<'a> {
    model_file: &'a str,
    model_text: &'a str,
    rules_file: &'a str,
    rules_text: &'a str,
}

/// An enforcer over `model` with the `g` and `p` lines, held in memory.
async fn enforcer(
    sources: &Sources<'_>,
    model: DefaultModel,
    policies: Vec<Vec<String>>,
    groupings: Vec<Vec<String>>,
) -> Result<Enforcer, LoadError> {
    let refused = |file: &str, what: &str, e: casbin::Error| {
        LoadError::new(file, None, None, format!("{what}: {e}"))
    };
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
        .await
        .map_err(|e| refused(sources.model_file, "cannot load the casbin policy", e))?;
    enforcer.enable_auto_save(false);
    enforcer.add_function("subjectIn", OperatorFunction::Arg2(subject_in));
    // `g` rules with domain `*` hold in every domain.
    enforcer
        .get_role_manager()
        .write()
        .matching_fn(None, Some(key_match));
    if !groupings.is_empty() {
        enforcer
            .add_grouping_policies(groupings)
            .await
            .map_err(|e| refused(sources.rules_file, "casbin refused the g rules", e))?;
    }
    if !policies.is_empty() {
        enforcer
            .add_policies(policies)
            .await
            .map_err(|e| refused(sources.rules_file, "casbin refused the p rules", e))?;
    }
    Ok(enforcer)
}

type Rules = (Vec<Vec<String>>, Vec<Vec<String>>);

fn parse_rules(file: &str, text: &str, catalog: &Catalog) -> Result<Rules, LoadError> {
    let mut policies = Vec::new();
    let mut groupings = Vec::new();
    let domains = catalog.domains();
    let check_domain = |line: usize, domain: &str| -> Result<(), LoadError> {
        if domain == "*" || domains.contains(domain) {
            Ok(())
        } else {
            Err(LoadError::new(
                file,
                Some(line),
                None,
                format!(
                    "unknown domain `{domain}` (known: *, {})",
                    domains.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let err = |message: String| LoadError::new(file, Some(line), None, message);
        if !seen.insert(fields.join(",")) {
            return Err(err("duplicate line".into()));
        }
        match fields.as_slice() {
            ["p", subject, domain, object, action, effect] => {
                Subject::parse(subject).map_err(&err)?;
                check_domain(line, domain)?;
                check_object(object, catalog).map_err(&err)?;
                if *action != READ {
                    return Err(err(format!(
                        "unknown action `{action}` (the only action is `read`)"
                    )));
                }
                if !matches!(*effect, "allow" | "deny") {
                    return Err(err(format!(
                        "unknown effect `{effect}` (expected `allow` or `deny`)"
                    )));
                }
                policies.push(fields[1..].iter().map(|s| s.to_string()).collect());
            }
            ["g", member, role, domain] => {
                Subject::parse(member).map_err(&err)?;
                if *member == "*" {
                    return Err(err(
                        "`g` rules need a principal or role as member, not `*`".into()
                    ));
                }
                match Subject::parse(role).map_err(&err)? {
                    Subject::Role(_) => {}
                    _ => {
                        return Err(err(format!(
                            "`{role}` must be a role, written `role:<name>`"
                        )));
                    }
                }
                check_domain(line, domain)?;
                groupings.push(fields[1..].iter().map(|s| s.to_string()).collect());
            }
            ["p", ..] => {
                return Err(err(
                    "`p` lines have 6 fields: p, subject, domain, product, read, allow|deny".into(),
                ));
            }
            ["g", ..] => {
                return Err(err(
                    "`g` lines have 4 fields: g, member, role:<name>, domain".into(),
                ));
            }
            [kind, ..] => {
                return Err(err(format!(
                    "unknown line type `{kind}` (expected `p` or `g`)"
                )));
            }
            [] => {}
        }
    }
    Ok((policies, groupings))
}

/// A product id, or a prefix pattern ending in `*`, that names at least one product.
fn check_object(object: &str, catalog: &Catalog) -> Result<(), String> {
    match object.find('*') {
        None if catalog.product(object).is_some() => Ok(()),
        None => Err(format!("unknown product `{object}`")),
        Some(i) if i + 1 == object.len() => {
            if catalog.products().any(|p| key_match(&p.id, object)) {
                Ok(())
            } else {
                Err(format!("pattern `{object}` matches no product"))
            }
        }
        Some(_) => Err(format!("`{object}`: `*` may only end a pattern")),
    }
}
