//! The shipped access model's decision, over its lines indexed by product.
//!
//! casbin evaluates its matcher (a rhai expression) on every `p` line it holds, so a first
//! decision costs time linear in the mesh's lines (a few per product). For the model meshgate
//! ships (`policies/access.conf`: `subjectIn(r.sub, p.sub) && (p.dom == "*" || p.dom ==
//! r.dom) && keyMatch(r.obj, p.obj) && r.act == p.act`, deny overrides allow), a line whose
//! object is a product id can only match a request for that product, so only the lines of
//! the requested product and the pattern lines (`reference.*`, `*`) are tried, with the same
//! three tests casbin would make (casbin's own `key_match`). Any other model text is left
//! to casbin. The two are compared on every principal and product of the reference mesh and
//! of generated meshes (`the_indexed_decision_is_casbins`).

use std::collections::HashMap;

use casbin::function_map::key_match;

/// The shipped model's request and policy tokens and matcher, as casbin stores them (`r.sub`
/// escaped to `r_sub`), the matcher without spaces.
pub(crate) const REQUEST: [&str; 4] = ["r_sub", "r_dom", "r_obj", "r_act"];
pub(crate) const POLICY: [&str; 5] = ["p_sub", "p_dom", "p_obj", "p_act", "p_eft"];
pub(crate) const MATCHER: &str =
    r#"subjectIn(r_sub,p_sub)&&(p_dom=="*"||p_dom==r_dom)&&keyMatch(r_obj,p_obj)&&r_act==p_act"#;

/// `subjectIn(r.sub, p.sub)`: the request's subject set, encoded `|id|role:a|`, contains the
/// rule's subject, or the rule's subject is `*`.
pub(crate) fn subject_in(encoding: &str, rule: &str) -> bool {
    rule == "*" || encoding.contains(&format!("|{rule}|"))
}

/// One `p` line: subject, domain, object, action, and whether it allows (or denies).
#[derive(Debug)]
struct Line {
    subject: String,
    domain: String,
    object: String,
    action: String,
    allow: bool,
}

/// `p` lines by the product they name, and the pattern lines apart.
#[derive(Debug, Default)]
pub(crate) struct LineIndex {
    by_product: HashMap<String, Vec<Line>>,
    patterns: Vec<Line>,
}

/// Which lines match a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matched {
    pub(crate) allow: bool,
    pub(crate) deny: bool,
}

impl LineIndex {
    /// The index of `lines` (`[sub, dom, obj, act, eft]` each); `None` if a line has another
    /// shape or an effect other than `allow`/`deny` (casbin then decides).
    pub(crate) fn new<'a>(lines: impl IntoIterator<Item = &'a Vec<String>>) -> Option<Self> {
        let mut index = Self::default();
        for line in lines {
            let [subject, domain, object, action, effect] = line.as_slice() else {
                return None;
            };
            let allow = match effect.as_str() {
                "allow" => true,
                "deny" => false,
                _ => return None,
            };
            let line = Line {
                subject: subject.clone(),
                domain: domain.clone(),
                object: object.clone(),
                action: action.clone(),
                allow,
            };
            if object.contains('*') {
                index.patterns.push(line);
            } else {
                index
                    .by_product
                    .entry(object.clone())
                    .or_default()
                    .push(line);
            }
        }
        Some(index)
    }

    /// The lines that match `(encoding, domain, product, action)` under the shipped matcher.
    pub(crate) fn matched(
        &self,
        encoding: &str,
        domain: &str,
        product: &str,
        action: &str,
    ) -> Matched {
        let mut matched = Matched::default();
        let exact = self.by_product.get(product).into_iter().flatten();
        for line in exact.chain(&self.patterns) {
            if subject_in(encoding, &line.subject)
                && (line.domain == "*" || line.domain == domain)
                && key_match(product, &line.object)
                && action == line.action
            {
                if line.allow {
                    matched.allow = true;
                } else {
                    matched.deny = true;
                }
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &str) -> Vec<String> {
        fields.split(',').map(|f| f.trim().to_string()).collect()
    }

    #[test]
    fn lines_match_by_subject_domain_product_and_action() {
        let lines = [
            line("role:owner, reference, reference.*, read, allow"),
            line("ann, payments, payments.transactions, read, allow"),
            line("role:auditor, *, *, read, deny"),
        ];
        let index = LineIndex::new(&lines).unwrap();
        let m = |enc, dom, obj| index.matched(enc, dom, obj, "read");
        let allow = Matched {
            allow: true,
            deny: false,
        };
        assert_eq!(m("|bo|role:owner|", "reference", "reference.x"), allow);
        assert_eq!(
            m("|bo|role:owner|", "markets", "reference.x"),
            Matched::default()
        );
        assert_eq!(m("|ann|", "payments", "payments.transactions"), allow);
        assert_eq!(
            m("|annie|", "payments", "payments.transactions"),
            Matched::default()
        );
        assert_eq!(
            m("|ann|role:auditor|", "payments", "payments.transactions"),
            Matched {
                allow: true,
                deny: true
            }
        );
        assert_eq!(
            index.matched("|ann|", "payments", "payments.transactions", "write"),
            Matched::default()
        );
        assert!(LineIndex::new(&[line("ann, payments, p, read, maybe")]).is_none());
        assert!(LineIndex::new(&[line("ann, payments, p, read")]).is_none());
    }
}
