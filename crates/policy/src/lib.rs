//! # meshgate-policy
//!
//! A product owner decides who may see which rows, which columns, and which values only as
//! masks or tokens. This crate turns those decisions into something the engine can enforce
//! and cannot misread:
//!
//! - **coarse access** with casbin ([`access`]): may this caller read this product at all?
//!   RBAC with domains; deny overrides allow;
//! - **product policies** ([`rules`]): per table, row filters (templates over caller
//!   attributes such as `lob = ${principal.lob}`) and column treatments (`clear`, `hidden`,
//!   `mask(<kind>)`, `tokenize(<token domain>)`);
//! - **global rules** ([`global`]): the governance team's floors by tag and classification,
//!   which every product policy may narrow and none may widen;
//! - **resolution** ([`resolve`]): once per query, per (caller, table), both layers collapse
//!   into a [`ResolvedTablePolicy`] whose attributes are literals;
//! - **golden decision files** ([`golden`]): what each caller must see of each table,
//!   checked against that same resolution (`meshgate policy test`); and **diffs**
//!   ([`diff`]): whether a change of the files widens what anyone sees (`meshgate policy diff`).
//!
//! Everything fails closed. A file that does not validate does not load (errors name file,
//! line and rule); a caller the rules do not clearly cover is denied; a sensitive column no
//! rule covers is hidden ([`default_treatment`]).

pub mod access;
pub mod diff;
mod error;
pub mod global;
pub mod golden;
pub mod grants;
mod lines;
mod memo;
mod principal;
pub mod resolve;
pub mod rules;
mod subjects;
mod template;
mod treatment;
pub mod users;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use meshgate_catalog::Catalog;

pub use access::AccessControl;
pub use error::{Denial, LoadError, NotAdmitted};
pub use global::GlobalRules;
pub use grants::GrantLayer;
pub use principal::Principal;
pub use resolve::{
    Admission, BoundFilter, ColumnDecision, PolicySet, ResolvedColumn, ResolvedTablePolicy,
    default_treatment,
};
pub use rules::{FilterKind, ProductPolicy};
pub use subjects::{Subject, SubjectSet};
pub use template::RowFilterTemplate;
pub use treatment::Treatment;
pub use users::{AuthError, UserDirectory, hash_password};

/// A policy source: a label for errors (usually the file path) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    fn read(path: &Path) -> Result<Self, LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::new(&name, None, None, e.to_string()))?;
        Ok(Self { name, text })
    }
}

/// The files a [`PolicySet`] is built from.
#[derive(Debug, Clone)]
pub struct PolicySources {
    /// The casbin model (`access.conf`).
    pub access_model: Source,
    /// The casbin policy lines (`access.csv`).
    pub access_rules: Source,
    /// One row/column policy per product (`products/*.toml`).
    pub products: Vec<Source>,
    /// The governance team's global rules (`global.toml`), when the mesh has them.
    pub global: Option<Source>,
}

impl PolicySources {
    /// Read `access.conf`, `access.csv`, `products/*.toml` and, when present, `global.toml`
    /// from a policy directory.
    pub fn from_dir(dir: &Path) -> Result<Self, LoadError> {
        let products_dir = dir.join("products");
        let mut files: Vec<_> = std::fs::read_dir(&products_dir)
            .map_err(|e| {
                LoadError::new(
                    &products_dir.display().to_string(),
                    None,
                    None,
                    e.to_string(),
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let global_file = dir.join("global.toml");
        let global = match global_file.try_exists() {
            Ok(true) => Some(Source::read(&global_file)?),
            Ok(false) => None,
            Err(e) => {
                return Err(LoadError::new(
                    &global_file.display().to_string(),
                    None,
                    None,
                    e.to_string(),
                ));
            }
        };
        Ok(Self {
            global,
            access_model: Source::read(&dir.join("access.conf"))?,
            access_rules: Source::read(&dir.join("access.csv"))?,
            products: files
                .iter()
                .map(|p| Source::read(p))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl PolicySet {
    /// Load and validate every source against the catalog. The first problem found is the
    /// error; nothing is partially loaded.
    pub async fn load(catalog: &Catalog, sources: &PolicySources) -> Result<Self, LoadError> {
        let access = AccessControl::load(
            &sources.access_model.name,
            &sources.access_model.text,
            &sources.access_rules.name,
            &sources.access_rules.text,
            catalog,
        )
        .await?;
        let mut products = BTreeMap::new();
        for source in &sources.products {
            let policy = ProductPolicy::parse(&source.name, &source.text, catalog)?;
            if let Some(previous) = products
                .get(&policy.product)
                .map(|p: &ProductPolicy| p.file.clone())
            {
                return Err(LoadError::new(
                    &source.name,
                    None,
                    None,
                    format!(
                        "product `{}` already has a policy in {previous}",
                        policy.product
                    ),
                ));
            }
            products.insert(policy.product.clone(), policy);
        }
        let global = sources
            .global
            .as_ref()
            .map(|s| GlobalRules::parse(&s.name, &s.text, catalog))
            .transpose()?;
        // The version is the files' content (and the contracts', below), named by file name only: replicas that hold the
        // same files in different directories (or built by another compiler) report the
        // same version on their audit records, and any change to a file is a new one.
        // Product policies in file-name order: the same files read from a directory or
        // embedded in a binary (in another order) are the same version.
        let file_name = |source: &Source| {
            Path::new(&source.name)
                .file_name()
                .map_or_else(|| source.name.clone(), |f| f.to_string_lossy().into_owned())
        };
        let mut by_name: Vec<(String, &Source)> =
            sources.products.iter().map(|s| (file_name(s), s)).collect();
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        let mut hasher = Sha256::new();
        for (file, source) in [
            (file_name(&sources.access_model), &sources.access_model),
            (file_name(&sources.access_rules), &sources.access_rules),
        ]
        .into_iter()
        .chain(by_name)
        .chain(sources.global.as_ref().map(|s| (file_name(s), s)))
        {
            for part in [file.as_bytes(), source.text.as_bytes()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
        }
        // The catalog too: a worker that holds other contracts than its gateway (a product
        // published to one and not yet to the other) holds another version, and refuses
        // the gateway's sealed scans rather than read what its own contract says.
        for product in catalog.all_versions() {
            for part in [product.id.clone(), product.canonical_contract()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part.as_bytes());
            }
        }
        let digest = hasher.finalize();
        Ok(Self {
            access: Arc::new(access),
            products: Arc::new(products),
            fingerprint: hex::encode(&digest[..8]),
            sources: Arc::new(sources.clone()),
            grants: None,
            global: global.map(Arc::new),
            resolved: Default::default(),
        })
    }
}
