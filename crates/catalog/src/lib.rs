//! # meshgate-catalog
//!
//! A data mesh is only usable if every consumer, policy and engine agrees on what a product
//! *is*: its id, owner, where its files live and which columns it has with which types and
//! classifications. This crate is that single description. It reads one manifest per product
//! (an Open Data Contract Standard v3.1 contract, see [`manifest`]), validates it, and exposes
//! typed [`Product`]s, [`Table`]s and [`Column`]s with their Arrow types.
//!
//! It holds no data and decides nothing about access; the policy crate decides, the storage
//! crate reads. Product tables appear in SQL as `<domain>.<table>`.

pub mod manifest;
pub mod odcs;
pub mod quality;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub use quality::QualityRule;

pub use types::{logical_type_of, parse_physical_type};

/// The custom property holding a view's SQL.
pub const VIEW_DEFINITION: &str = "viewDefinition";
/// The contract-level custom property that says until when a deprecated product is served
/// (`YYYY-MM-DD`, UTC, inclusive).
pub const SUNSET: &str = "sunset";

/// Errors found while loading manifests. Each names the file and, where it can, the place in it.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a valid ODCS v3.1 contract: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {at}: {message}")]
    Invalid {
        file: String,
        at: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Conflict { file: String, message: String },
}

/// The product catalog: every product manifest that was loaded, indexed for lookup.
///
/// A product is normally one contract. During a deprecation window it is several: one per
/// major version, the older ones `deprecated` with a sunset, served side by side from the
/// same bucket under one policy. Each table has one SQL name it is listed under
/// ([`Table::sql_name`]): the unversioned `<table>` names the oldest major that has the table,
/// so existing consumers keep working through the window, and `<table>_v<major>` each newer
/// one. `<table>_v<major>` also resolves for the oldest (unlisted), so a consumer who moved to
/// the new name keeps it once the old major is gone.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// id -> its versions, oldest major first (the last is the current one).
    products: BTreeMap<String, Vec<Arc<Product>>>,
    /// (domain, SQL name: listed names and aliases) -> (product id, index of the version,
    /// index of the table in it)
    tables: BTreeMap<(String, String), (String, usize, usize)>,
    /// The (domain, SQL name) pairs listings show: one per table and version.
    listed: BTreeSet<(String, String)>,
}

/// A data product: one domain team's published dataset, living in its own bucket.
#[derive(Debug, Clone)]
pub struct Product {
    /// `<domain>.<name>`, e.g. `reference.counterparties`.
    pub id: String,
    pub domain: String,
    pub name: String,
    pub version: String,
    pub status: String,
    pub description: String,
    pub owner: Owner,
    pub support: Vec<manifest::SupportChannel>,
    pub location: Location,
    pub tables: Vec<Table>,
    pub slos: Vec<Slo>,
    /// The quality rules of its tables and columns, and its freshness SLO (see [`quality`]).
    pub quality: Vec<QualityRule>,
    /// For a `deprecated` product, the last day it is served (customProperties `sunset`).
    pub sunset: Option<Sunset>,
    pub tags: Vec<String>,
    /// The manifest this product was read from (file name or other source label).
    pub source: String,
    /// The contract as written, kept for export and for fields meshgate does not interpret.
    pub contract: manifest::Contract,
}

/// Who owns a product, from the contract's `team`.
#[derive(Debug, Clone)]
pub struct Owner {
    pub team: String,
    /// Usernames of members whose role is `owner`.
    pub owners: Vec<String>,
    /// Usernames of members whose role is `delegate`: they decide access requests for the
    /// owners.
    pub delegates: Vec<String>,
}

/// The last day a deprecated product is served: through that day (UTC), refused after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sunset {
    /// As written, `YYYY-MM-DD`.
    pub date: String,
    /// The first moment it is no longer served (the next day, 00:00 UTC), in milliseconds
    /// since the epoch.
    pub ends_at: i64,
}

/// Where a product is in its life, at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle<'a> {
    /// Served, nothing to say.
    Served,
    /// Served until its sunset: consumers are warned.
    Deprecated(&'a Sunset),
    /// No longer served: `retired`, or deprecated past its sunset.
    Retired(Option<&'a Sunset>),
}

impl Product {
    /// Where this product is in its life at `now` (milliseconds since the epoch).
    pub fn lifecycle(&self, now: i64) -> Lifecycle<'_> {
        match (self.status.as_str(), &self.sunset) {
            ("retired", sunset) => Lifecycle::Retired(sunset.as_ref()),
            (_, Some(sunset)) if now >= sunset.ends_at => Lifecycle::Retired(Some(sunset)),
            (_, Some(sunset)) => Lifecycle::Deprecated(sunset),
            _ => Lifecycle::Served,
        }
    }

    /// The first moment after `now` at which [`Product::lifecycle`] answers differently (a
    /// deprecated product's sunset ending), if there is one.
    pub fn lifecycle_changes_at(&self, now: i64) -> Option<i64> {
        match (self.status.as_str(), &self.sunset) {
            ("retired", _) => None,
            (_, Some(sunset)) if now < sunset.ends_at => Some(sunset.ends_at),
            _ => None,
        }
    }

    /// The major version (`2` of `2.1.0`), when the version starts with a number.
    pub fn major(&self) -> Option<u64> {
        self.version.split('.').next()?.parse().ok()
    }

    /// The table `name` (its contract name) of this version.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The contract as meshgate read it, written out again (comments and layout gone): what
    /// a node's mesh version is made of, so that two nodes holding the same contracts in
    /// different files, or formatted differently, agree.
    pub fn canonical_contract(&self) -> String {
        serde_yaml::to_string(&self.contract).unwrap_or_else(|_| format!("{:?}", self.contract))
    }
}

impl Owner {
    /// May `user` decide access to this product (an owner or a delegate)?
    pub fn decides(&self, user: &str) -> bool {
        self.owners.iter().chain(&self.delegates).any(|u| u == user)
    }
}

/// A service-level objective from `slaProperties`.
#[derive(Debug, Clone)]
pub struct Slo {
    pub property: String,
    pub value: String,
    pub unit: Option<String>,
}

/// Where a product's files live: one bucket per product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// Key prefix inside the bucket; may contain `{model}`, replaced by the table's physical name.
    /// Without `{model}`, each table lives in a folder named after it under the prefix.
    pub prefix: String,
    pub format: Format,
    /// For S3-compatible servers, the endpoint named in the contract (informational; the
    /// gateway's storage configuration decides where it really connects).
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
}

impl Location {
    /// The key prefix (ending in `/`) under which a table's files live.
    pub fn table_prefix(&self, table: &Table) -> String {
        let prefix = if self.prefix.contains("{model}") {
            self.prefix.replace("{model}", &table.physical_name)
        } else {
            format!("{}{}", self.prefix, table.physical_name)
        };
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.is_empty() {
            prefix
        } else {
            format!("{prefix}/")
        }
    }

    /// `s3://<bucket>/<table prefix>` for a table.
    pub fn table_url(&self, table: &Table) -> String {
        format!("s3://{}/{}", self.bucket, self.table_prefix(table))
    }
}

/// One table of a product, as `<domain>.<sql_name>` in SQL.
#[derive(Debug, Clone)]
pub struct Table {
    /// The name in the contract, which policies, grants and quality rules use.
    pub name: String,
    /// The name it is listed under in SQL: `name`, or `<name>_v<major>` for a newer major
    /// served beside an older one (see [`Catalog`]).
    pub sql_name: String,
    pub physical_name: String,
    pub description: String,
    pub columns: Vec<Column>,
    /// For a published view (`physicalType: view`), its SQL (`customProperties`
    /// `viewDefinition`). Views have no files of their own: they are planned as the caller,
    /// so the policies of the tables they read apply.
    pub view: Option<String>,
}

impl Table {
    pub fn is_view(&self) -> bool {
        self.view.is_some()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column names, `a, b, c`: for messages that say what a rule could have named.
    pub fn column_names(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The table's full schema as the manifest declares it (all columns, unprotected).
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }
}

/// One column with its type and governance metadata.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub logical_type: String,
    pub physical_type: String,
    pub description: String,
    pub primary_key: bool,
    pub classification: Option<String>,
    pub tags: Vec<String>,
}

impl Column {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

impl Catalog {
    /// Load every `*.yaml` / `*.yml` manifest in a directory (sorted by name, not recursive).
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let label = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::Io {
            file: label.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| CatalogError::Io {
                file: name.clone(),
                source,
            })?;
            sources.push((name, text));
        }
        Self::from_sources(sources)
    }

    /// Build a catalog from `(source label, manifest text)` pairs.
    pub fn from_sources<I, S, T>(sources: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: AsRef<str>,
    {
        let mut products: BTreeMap<String, Vec<Product>> = BTreeMap::new();
        let mut buckets: BTreeMap<String, String> = BTreeMap::new();
        for (source, text) in sources {
            let source = source.into();
            let product = parse_manifest(&source, text.as_ref())?;
            let conflict = |message: String| CatalogError::Conflict {
                file: source.clone(),
                message,
            };
            if let Some(other) = buckets.insert(product.location.bucket.clone(), product.id.clone())
                && other != product.id
            {
                return Err(conflict(format!(
                    "bucket `{}` is already the lake of product `{other}`; every product needs its own bucket",
                    product.location.bucket
                )));
            }
            let versions = products.entry(product.id.clone()).or_default();
            if let Some(other) = versions.first() {
                let (Some(major), Some(other_major)) = (product.major(), other.major()) else {
                    return Err(conflict(format!(
                        "product `{}` is already defined in {}; two contracts of one product must \
                         be different major versions (`<major>.<minor>.<patch>`)",
                        product.id, other.source
                    )));
                };
                if let Some(same) = versions.iter().find(|v| v.major() == Some(major)) {
                    return Err(conflict(format!(
                        "product `{}` major version {major} is already defined in {}",
                        product.id, same.source
                    )));
                }
                if product.location.bucket != other.location.bucket {
                    return Err(conflict(format!(
                        "major version {major} of product `{}` is in bucket `{}`, version \
                         {other_major} in `{}`; every version of a product lives in its bucket",
                        product.id, product.location.bucket, other.location.bucket
                    )));
                }
            }
            versions.push(product);
        }
        let mut catalog = Catalog::default();
        for (id, mut versions) in products {
            versions.sort_by_key(|v| v.major());
            // Only the newest major may be served without an end: an older one is served
            // for its deprecation window, then goes.
            if let Some(newest) = versions.last() {
                for older in &versions[..versions.len() - 1] {
                    if !matches!(older.status.as_str(), "deprecated" | "retired") {
                        return Err(CatalogError::Conflict {
                            file: older.source.clone(),
                            message: format!(
                                "product `{id}` version {} is served beside version {} (in {}): \
                                 an older major version must be `status: deprecated` with a \
                                 `{SUNSET}` date, or `retired`",
                                older.version, newest.version, newest.source
                            ),
                        });
                    }
                }
            }
            catalog.add(id, versions)?;
        }
        Ok(catalog)
    }

    /// Name the tables of one product's versions and index them.
    fn add(&mut self, id: String, mut versions: Vec<Product>) -> Result<(), CatalogError> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (index, version) in versions.iter_mut().enumerate() {
            let major = version.major();
            for (at, table) in version.tables.iter_mut().enumerate() {
                let versioned = major.map(|m| format!("{}_v{m}", table.name));
                let first = seen.insert(table.name.clone());
                if !first && let Some(versioned) = &versioned {
                    table.sql_name = versioned.clone();
                }
                let mut names = vec![(table.sql_name.clone(), true)];
                // The oldest major's versioned name resolves too (unlisted), so a consumer
                // who names the version keeps working when an older one goes.
                if first && let Some(versioned) = versioned {
                    names.push((versioned, false));
                }
                for (name, listed) in names {
                    let key = (version.domain.clone(), name);
                    if let Some((other, ..)) = self.tables.get(&key) {
                        return Err(CatalogError::Conflict {
                            file: version.source.clone(),
                            message: format!(
                                "table `{}.{}` is already published by product `{other}` (a \
                                 name ending in `_v<number>` also names a major version of a \
                                 table)",
                                key.0, key.1
                            ),
                        });
                    }
                    if listed {
                        self.listed.insert(key.clone());
                    }
                    self.tables.insert(key, (id.clone(), index, at));
                }
            }
        }
        self.products
            .insert(id, versions.into_iter().map(Arc::new).collect());
        Ok(())
    }

    /// Every product, at its current (newest) version.
    pub fn products(&self) -> impl Iterator<Item = &Arc<Product>> {
        self.products.values().filter_map(|v| v.last())
    }

    /// Every version of every product: one per product, except in a deprecation window.
    pub fn all_versions(&self) -> impl Iterator<Item = &Arc<Product>> {
        self.products.values().flatten()
    }

    /// The first moment after `now` at which any product version's lifecycle changes: what
    /// was resolved against this catalog at `now` may differ from then on.
    pub fn lifecycle_changes_at(&self, now: i64) -> Option<i64> {
        self.all_versions()
            .filter_map(|p| p.lifecycle_changes_at(now))
            .min()
    }

    /// A product at its current (newest) version.
    pub fn product(&self, id: &str) -> Option<&Arc<Product>> {
        self.products.get(id)?.last()
    }

    /// Every version of a product, oldest major first.
    pub fn versions(&self, id: &str) -> &[Arc<Product>] {
        self.products.get(id).map_or(&[], Vec::as_slice)
    }

    /// The newest version of `product`'s id when it is a newer major than `product`: what
    /// replaces it.
    pub fn successor(&self, product: &Product) -> Option<&Arc<Product>> {
        self.product(&product.id)
            .filter(|newest| newest.major() > product.major())
    }

    /// Resolve a SQL table name `<domain>.<table>` (or `<table>_v<major>`) to the product
    /// version and table it names.
    pub fn table(&self, domain: &str, table: &str) -> Option<(&Arc<Product>, &Table)> {
        let (id, version, at) = self.tables.get(&(domain.to_string(), table.to_string()))?;
        let product = self.products.get(id)?.get(*version)?;
        Some((product, product.tables.get(*at)?))
    }

    /// Every domain that publishes at least one product.
    pub fn domains(&self) -> BTreeSet<&str> {
        self.products().map(|p| p.domain.as_str()).collect()
    }

    /// Whether `domain` publishes at least one product: [`Self::domains`] for one name,
    /// without a pass over every product (planning asks this per schema it looks up).
    pub fn has_domain(&self, domain: &str) -> bool {
        // Every product has a table, and the tables are ordered by domain first.
        self.tables
            .range((domain.to_string(), String::new())..)
            .next()
            .is_some_and(|((d, _), _)| d == domain)
    }

    /// The `(product version, table)` pairs a listing of one domain shows, in SQL name order.
    pub fn tables_in_domain<'a>(
        &'a self,
        domain: &'a str,
    ) -> impl Iterator<Item = (&'a Arc<Product>, &'a Table)> + 'a {
        // The set is ordered by domain first: the domain's entries are one range of it, so a
        // listing of every domain reads each entry once (a filter over the whole set per
        // domain grew with domains × tables).
        self.listed
            .range((domain.to_string(), String::new())..)
            .take_while(move |(d, _)| d == domain)
            .filter_map(move |(d, t)| self.table(d, t))
    }
}

fn is_sql_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn parse_manifest(file: &str, text: &str) -> Result<Product, CatalogError> {
    let contract: manifest::Contract =
        serde_yaml::from_str(text).map_err(|e| CatalogError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    let invalid = |at: &str, message: String| CatalogError::Invalid {
        file: file.to_string(),
        at: at.to_string(),
        message,
    };
    if let Some((at, key, meant)) = manifest::near_misses(&contract).into_iter().next() {
        return Err(invalid(
            &at,
            format!(
                "unknown field `{key}`: did you mean `{meant}`? (a misspelt field could drop a column's protection)"
            ),
        ));
    }

    if contract.kind != "DataContract" {
        return Err(invalid(
            "kind",
            format!("must be `DataContract`, found `{}`", contract.kind),
        ));
    }
    if !matches!(
        contract.api_version.as_str(),
        "v3.1.0" | "v3.0.2" | "v3.0.1" | "v3.0.0"
    ) {
        return Err(invalid(
            "apiVersion",
            format!(
                "unsupported ODCS version `{}` (expected v3.1.0)",
                contract.api_version
            ),
        ));
    }
    let domain = contract.domain.clone().ok_or_else(|| {
        invalid(
            "domain",
            "every product needs a domain (it becomes the SQL schema)".into(),
        )
    })?;
    if !is_sql_name(&domain) {
        return Err(invalid(
            "domain",
            format!("`{domain}` must be lowercase snake_case"),
        ));
    }
    let name = contract
        .id
        .strip_prefix(&format!("{domain}."))
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
        .ok_or_else(|| {
            invalid(
                "id",
                format!(
                    "`{}` must be `<domain>.<product>` with domain `{domain}`",
                    contract.id
                ),
            )
        })?
        .to_string();

    let team = contract
        .team
        .as_ref()
        .ok_or_else(|| invalid("team", "every product needs an owning team".into()))?;
    let members = |role: &str| -> Vec<String> {
        team.members
            .iter()
            .filter(|m| m.role.as_deref() == Some(role))
            .map(|m| m.username.clone())
            .collect()
    };
    let owner = Owner {
        team: team.name.clone().unwrap_or_default(),
        owners: members("owner"),
        delegates: members("delegate"),
    };
    if owner.team.is_empty() || owner.owners.is_empty() {
        return Err(invalid(
            "team",
            "needs a `name` and at least one member with `role: owner`".into(),
        ));
    }

    let location = parse_location(&contract, &invalid)?;

    if contract.schema.is_empty() {
        return Err(invalid(
            "schema",
            "a product needs at least one table".into(),
        ));
    }
    let mut tables: Vec<Table> = Vec::new();
    let mut quality_rules: Vec<QualityRule> = Vec::new();
    for (ti, object) in contract.schema.iter().enumerate() {
        let at = format!("schema[{ti}] ({})", object.name);
        if !is_sql_name(&object.name) {
            return Err(invalid(
                &at,
                format!("table name `{}` must be lowercase snake_case", object.name),
            ));
        }
        if tables.iter().any(|t| t.name == object.name) {
            return Err(invalid(
                &at,
                format!("table `{}` is listed twice", object.name),
            ));
        }
        let view = match object.physical_type.as_deref() {
            None | Some("table") => None,
            Some("view") => {
                let definition = object
                    .custom_properties
                    .iter()
                    .find(|p| p.property == VIEW_DEFINITION)
                    .and_then(|p| p.value.as_str())
                    .filter(|sql| !sql.trim().is_empty())
                    .ok_or_else(|| {
                        invalid(
                            &at,
                            format!("a view needs its SQL in customProperties `{VIEW_DEFINITION}`"),
                        )
                    })?;
                Some(definition.to_string())
            }
            Some(other) => {
                return Err(invalid(
                    &at,
                    format!("physicalType `{other}` is not supported (`table` or `view`)"),
                ));
            }
        };
        if object.properties.is_empty() {
            return Err(invalid(
                &at,
                "a table needs at least one property (column)".into(),
            ));
        }
        let mut columns: Vec<Column> = Vec::new();
        for (ci, property) in object.properties.iter().enumerate() {
            let at = format!("{at}.properties[{ci}] ({})", property.name);
            if property.name.is_empty() || property.name.chars().any(char::is_control) {
                return Err(invalid(
                    &at,
                    "column names must be non-empty and printable".into(),
                ));
            }
            if columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&property.name))
            {
                return Err(invalid(
                    &at,
                    format!(
                        "column `{}` is listed twice (names are compared ignoring case)",
                        property.name
                    ),
                ));
            }
            let physical = property.physical_type.as_deref().ok_or_else(|| {
                invalid(
                    &at,
                    "needs a physicalType (e.g. BIGINT, VARCHAR, DATE)".into(),
                )
            })?;
            let data_type = parse_physical_type(physical).map_err(|m| invalid(&at, m))?;
            let expected_logical = logical_type_of(&data_type);
            let logical = property
                .logical_type
                .clone()
                .unwrap_or_else(|| expected_logical.to_string());
            if logical != expected_logical {
                return Err(invalid(
                    &at,
                    format!(
                        "logicalType `{logical}` does not match physicalType `{physical}` (expected `{expected_logical}`)"
                    ),
                ));
            }
            columns.push(Column {
                name: property.name.clone(),
                data_type,
                nullable: !property.required,
                logical_type: logical,
                physical_type: physical.to_string(),
                description: property.description.clone().unwrap_or_default(),
                primary_key: property.primary_key,
                classification: property.classification.clone(),
                tags: property.tags.clone(),
            });
        }
        let mut rules = Vec::new();
        if let Some(list) = object.extra.get("quality") {
            rules.extend(
                quality::parse_list(&object.name, None, list).map_err(|m| invalid(&at, m))?,
            );
        }
        for (ci, property) in object.properties.iter().enumerate() {
            if let Some(list) = property.extra.get("quality") {
                let at = format!("{at}.properties[{ci}] ({})", property.name);
                rules.extend(
                    quality::parse_list(&object.name, Some(&property.name), list)
                        .map_err(|m| invalid(&at, m))?,
                );
            }
        }
        for rule in &mut rules {
            if let quality::Check::Metric {
                metric: quality::Metric::DuplicateValues(key),
                ..
            } = &rule.check
                && let Some(unknown) = key.iter().find(|c| !columns.iter().any(|k| &k.name == *c))
            {
                return Err(invalid(
                    &at,
                    format!(
                        "quality rule `{}` names `{unknown}`, which is not a column of the table",
                        rule.id
                    ),
                ));
            }
            if view.is_some() {
                rule.check = quality::Check::NotChecked {
                    reason: "a view has no files of its own to measure; rules on its tables do"
                        .into(),
                };
            }
        }
        quality_rules.extend(rules);
        tables.push(Table {
            name: object.name.clone(),
            sql_name: object.name.clone(),
            physical_name: object
                .physical_name
                .clone()
                .unwrap_or_else(|| object.name.clone()),
            description: object.description.clone().unwrap_or_default(),
            columns,
            view,
        });
    }

    let slos: Vec<Slo> = contract
        .sla_properties
        .iter()
        .map(|s| Slo {
            property: s.property.clone(),
            value: match &s.value {
                serde_yaml::Value::String(v) => v.clone(),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            },
            unit: s.unit.clone(),
        })
        .collect();

    let sunset = parse_sunset(&contract, &invalid)?;

    if let Some(freshness) = freshness(&slos) {
        quality_rules.insert(0, freshness);
    }

    let description = contract
        .description
        .as_ref()
        .and_then(|d| d.purpose.clone())
        .unwrap_or_default();

    Ok(Product {
        id: contract.id.clone(),
        domain,
        name,
        version: contract.version.clone(),
        status: contract.status.clone(),
        description,
        owner,
        support: contract.support.clone(),
        location,
        tables,
        slos,
        quality: quality_rules,
        sunset,
        tags: contract.tags.clone(),
        source: file.to_string(),
        contract,
    })
}

/// A deprecated product's `sunset`: required with `status: deprecated` (consumers must know
/// until when), refused on any other status (it would retire an active product silently).
fn parse_sunset(
    contract: &manifest::Contract,
    invalid: &dyn Fn(&str, String) -> CatalogError,
) -> Result<Option<Sunset>, CatalogError> {
    let written = contract
        .custom_properties
        .iter()
        .find(|p| p.property == SUNSET)
        .map(|p| match &p.value {
            serde_yaml::Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        });
    match (contract.status.as_str(), written) {
        ("deprecated", None) => Err(invalid(
            "customProperties",
            format!(
                "a deprecated product needs its last day served: customProperties `{SUNSET}: YYYY-MM-DD`"
            ),
        )),
        ("deprecated", Some(date)) => {
            let ends_at = day_after_millis(&date).ok_or_else(|| {
                invalid(
                    "customProperties",
                    format!("`{SUNSET}` must be a date, YYYY-MM-DD; found `{date}`"),
                )
            })?;
            Ok(Some(Sunset { date, ends_at }))
        }
        (status, Some(_)) => Err(invalid(
            "customProperties",
            format!("`{SUNSET}` is for a deprecated product; this one's status is `{status}`"),
        )),
        (_, None) => Ok(None),
    }
}

/// The first millisecond after the day `YYYY-MM-DD` (UTC).
fn day_after_millis(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let days_in = [
        31,
        if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) {
            29
        } else {
            28
        },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days + 1) * 86_400_000)
}

/// The freshness the SLOs promise: data at most `latency` late, refreshed every `frequency`,
/// so the newest file may be as old as both together.
fn freshness(slos: &[Slo]) -> Option<QualityRule> {
    let promised: Vec<&Slo> = slos
        .iter()
        .filter(|s| matches!(s.property.as_str(), "latency" | "frequency"))
        .collect();
    if promised.is_empty() {
        return None;
    }
    let mut total = 0u64;
    for slo in &promised {
        match quality::seconds(&slo.value, slo.unit.as_deref()) {
            Some(s) => total = total.saturating_add(s),
            None => {
                return Some(QualityRule {
                    id: "freshness".into(),
                    table: None,
                    column: None,
                    check: quality::Check::NotChecked {
                        reason: format!(
                            "the `{}` SLO `{} {}` is not a duration in s, m, h, d or w",
                            slo.property,
                            slo.value,
                            slo.unit.as_deref().unwrap_or("")
                        ),
                    },
                    dimension: Some("timeliness".into()),
                    description: String::new(),
                });
            }
        }
    }
    Some(QualityRule {
        id: "freshness".into(),
        table: None,
        column: None,
        check: quality::Check::Freshness {
            max_age_seconds: total,
        },
        dimension: Some("timeliness".into()),
        description: "the newest file is no older than the latency and frequency SLOs allow".into(),
    })
}

fn parse_location(
    contract: &manifest::Contract,
    invalid: &dyn Fn(&str, String) -> CatalogError,
) -> Result<Location, CatalogError> {
    let mut s3 = contract.servers.iter().filter(|s| s.server_type == "s3");
    let server = s3.next().ok_or_else(|| {
        invalid(
            "servers",
            "needs one server of `type: s3` (the product's bucket)".into(),
        )
    })?;
    if s3.next().is_some() {
        return Err(invalid(
            "servers",
            "more than one s3 server: a product lives in exactly one bucket".into(),
        ));
    }
    let at = format!("servers ({})", server.server);
    let url = server
        .location
        .as_deref()
        .ok_or_else(|| invalid(&at, "needs `location: s3://<bucket>/<prefix>`".into()))?;
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| invalid(&at, format!("location `{url}` must start with s3://")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_bucket_name(bucket) {
        return Err(invalid(
            &at,
            format!("`{bucket}` is not a valid bucket name"),
        ));
    }
    if prefix.contains("..") || prefix.contains('*') {
        return Err(invalid(
            &at,
            format!("prefix `{prefix}` may not contain `..` or wildcards"),
        ));
    }
    let format = match server.format.as_deref() {
        None | Some("parquet") => Format::Parquet,
        Some(other) => {
            return Err(invalid(
                &at,
                format!("format `{other}` is not supported (only parquet)"),
            ));
        }
    };
    Ok(Location {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        format,
        endpoint_url: server.endpoint_url.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
apiVersion: v3.1.0
kind: DataContract
id: sales.orders
version: 1.0.0
status: active
domain: sales
team: {name: sales-data, members: [{username: alice, role: owner}]}
servers: [{server: lake, type: s3, location: "s3://sales-orders/data/{model}/", format: parquet}]
schema:
  - name: orders
    properties:
      - {name: order_id, logicalType: integer, physicalType: BIGINT, required: true}
      - {name: email, physicalType: VARCHAR, tags: [pii]}
"#;

    #[test]
    fn a_deprecated_product_states_its_sunset_and_retires_after_it() {
        let deprecated = MINIMAL.replace(
            "status: active",
            "status: deprecated\ncustomProperties: [{property: sunset, value: 2027-02-28}]",
        );
        let catalog = Catalog::from_sources([("orders.yaml", deprecated)]).unwrap();
        let product = catalog.product("sales.orders").unwrap();
        let sunset = product.sunset.as_ref().unwrap();
        // 2027-03-01T00:00:00Z
        assert_eq!(sunset.ends_at, 1_803_859_200_000);
        assert!(matches!(
            product.lifecycle(sunset.ends_at - 1),
            Lifecycle::Deprecated(_)
        ));
        assert!(matches!(
            product.lifecycle(sunset.ends_at),
            Lifecycle::Retired(Some(_))
        ));
        // The change is announced until it happens, and none after.
        assert_eq!(
            catalog.lifecycle_changes_at(sunset.ends_at - 1),
            Some(sunset.ends_at)
        );
        assert_eq!(catalog.lifecycle_changes_at(sunset.ends_at), None);
        let active = Catalog::from_sources([("orders.yaml", MINIMAL)]).unwrap();
        assert!(matches!(
            active.product("sales.orders").unwrap().lifecycle(i64::MAX),
            Lifecycle::Served
        ));
        assert_eq!(active.lifecycle_changes_at(0), None);
        for (status, extra, says) in [
            ("deprecated", "", "needs its last day served"),
            (
                "deprecated",
                "\ncustomProperties: [{property: sunset, value: 2027-02-30}]",
                "must be a date",
            ),
            (
                "deprecated",
                "\ncustomProperties: [{property: sunset, value: next year}]",
                "must be a date",
            ),
            (
                "active",
                "\ncustomProperties: [{property: sunset, value: 2027-02-28}]",
                "is for a deprecated product",
            ),
        ] {
            let text = MINIMAL.replace("status: active", &format!("status: {status}{extra}"));
            let error = Catalog::from_sources([("orders.yaml", text)])
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{status}{extra}: {error}");
        }
        let retired = MINIMAL.replace("status: active", "status: retired");
        let catalog = Catalog::from_sources([("orders.yaml", retired)]).unwrap();
        assert!(matches!(
            catalog.product("sales.orders").unwrap().lifecycle(0),
            Lifecycle::Retired(None)
        ));
    }

    #[test]
    fn a_domain_lists_its_own_tables_only_even_beside_a_domain_it_prefixes() {
        let in_domain = |domain: &str, table: &str| {
            MINIMAL
                .replace("id: sales.orders", &format!("id: {domain}.{table}"))
                .replace("domain: sales", &format!("domain: {domain}"))
                .replace(
                    "s3://sales-orders/",
                    &format!("s3://{domain}-{table}/").replace('_', "-"),
                )
                .replace("  - name: orders", &format!("  - name: {table}"))
        };
        let catalog = Catalog::from_sources([
            ("a.yaml", in_domain("sales_eu", "invoices")),
            ("b.yaml", in_domain("sales", "refunds")),
            ("c.yaml", in_domain("ops", "tickets")),
            ("d.yaml", in_domain("sales", "orders")),
        ])
        .unwrap();
        let listed = |domain: &str| -> Vec<String> {
            catalog
                .tables_in_domain(domain)
                .map(|(p, t)| format!("{}.{}", p.domain, t.sql_name))
                .collect()
        };
        assert_eq!(listed("sales"), ["sales.orders", "sales.refunds"]);
        assert_eq!(listed("sales_eu"), ["sales_eu.invoices"]);
        assert_eq!(listed("ops"), ["ops.tickets"]);
        assert!(listed("sale").is_empty());
        assert!(listed("zzz").is_empty());
        for domain in ["sales", "sales_eu", "ops"] {
            assert!(catalog.has_domain(domain), "{domain}");
        }
        for other in ["sale", "sales_e", "zzz", "", "a"] {
            assert!(!catalog.has_domain(other), "{other}");
        }
        assert_eq!(
            catalog.domains().into_iter().collect::<Vec<_>>(),
            ["ops", "sales", "sales_eu"]
        );
    }

    /// Version 2.0.0 of `sales.orders`, with `orders.email` dropped and a table added.
    fn second_major() -> String {
        MINIMAL.replace("version: 1.0.0", "version: 2.0.0").replace(
            "      - {name: email, physicalType: VARCHAR, tags: [pii]}\n",
            "",
        ) + "  - name: returns\n    properties:\n      - {name: order_id, physicalType: BIGINT}\n"
    }

    #[test]
    fn two_majors_are_served_side_by_side_under_their_own_names() {
        let old = MINIMAL.replace(
            "status: active",
            "status: deprecated\ncustomProperties: [{property: sunset, value: 2027-02-28}]",
        );
        let catalog =
            Catalog::from_sources([("v2.yaml", second_major()), ("v1.yaml", old.clone())]).unwrap();
        assert_eq!(catalog.product("sales.orders").unwrap().version, "2.0.0");
        assert_eq!(catalog.versions("sales.orders").len(), 2);
        assert_eq!(catalog.products().count(), 1);
        assert_eq!(catalog.all_versions().count(), 2);
        // The unversioned name keeps the oldest major; each newer one has its own.
        let named = |name: &str| {
            catalog
                .table("sales", name)
                .map(|(p, t)| (p.version.clone(), t.name.clone(), t.sql_name.clone()))
        };
        let v = |version: &str, name: &str, sql: &str| {
            Some((version.to_string(), name.to_string(), sql.to_string()))
        };
        assert_eq!(named("orders"), v("1.0.0", "orders", "orders"));
        assert_eq!(named("orders_v1"), v("1.0.0", "orders", "orders"));
        assert_eq!(named("orders_v2"), v("2.0.0", "orders", "orders_v2"));
        // A table new in version 2 has no older major to keep the plain name for.
        assert_eq!(named("returns"), v("2.0.0", "returns", "returns"));
        assert_eq!(named("orders_v3"), None);
        let listed: Vec<String> = catalog
            .tables_in_domain("sales")
            .map(|(_, t)| t.sql_name.clone())
            .collect();
        assert_eq!(listed, ["orders", "orders_v2", "returns"]);
        let (v1, _) = catalog.table("sales", "orders").unwrap();
        assert_eq!(catalog.successor(v1).unwrap().version, "2.0.0");
        assert!(
            catalog
                .successor(catalog.product("sales.orders").unwrap())
                .is_none()
        );

        // Alone, a product's versioned name still resolves, unlisted.
        let alone = Catalog::from_sources([("v2.yaml", second_major())]).unwrap();
        assert_eq!(
            alone.table("sales", "orders_v2").unwrap().1.sql_name,
            "orders"
        );
        assert_eq!(alone.tables_in_domain("sales").count(), 2);

        for (sources, says) in [
            // An older major without an end would be served for ever.
            (
                vec![MINIMAL.to_string(), second_major()],
                "must be `status: deprecated`",
            ),
            (
                vec![old.clone(), old.replace("version: 1.0.0", "version: 1.1.0")],
                "major version 1 is already defined",
            ),
            (
                vec![
                    old.clone(),
                    second_major().replace("s3://sales-orders/", "s3://sales-orders-2/"),
                ],
                "every version of a product lives in its bucket",
            ),
            (
                vec![
                    old.clone(),
                    second_major().replace("version: 2.0.0", "version: next"),
                ],
                "different major versions",
            ),
        ] {
            let error = Catalog::from_sources(
                sources
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("{i}.yaml"), s.as_str())),
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains(says), "{error}");
        }
        // `_v<major>` names a version, so a table of that name elsewhere in the domain clashes.
        let clash = MINIMAL
            .replace("sales.orders", "sales.archive")
            .replace("s3://sales-orders/", "s3://sales-archive/")
            .replace("- name: orders", "- name: orders_v1");
        let error = Catalog::from_sources([("a.yaml", MINIMAL), ("b.yaml", clash.as_str())])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`sales.orders_v1` is already published"),
            "{error}"
        );
    }

    #[test]
    fn loads_a_minimal_contract() {
        let catalog = Catalog::from_sources([("orders.yaml", MINIMAL)]).unwrap();
        let (product, table) = catalog.table("sales", "orders").unwrap();
        assert_eq!(product.id, "sales.orders");
        assert_eq!(product.location.bucket, "sales-orders");
        assert_eq!(
            product.location.table_url(table),
            "s3://sales-orders/data/orders/"
        );
        assert!(!table.column("order_id").unwrap().nullable);
        assert!(table.column("email").unwrap().has_tag("pii"));
        assert_eq!(product.owner.owners, vec!["alice".to_string()]);
    }

    #[test]
    fn rejects_unknown_fields_because_a_typo_could_drop_protection() {
        let text = MINIMAL.replace("tags: [pii]", "tagz: [pii]");
        let err = Catalog::from_sources([("orders.yaml", text)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("orders.yaml") && err.contains("tagz"), "{err}");
    }

    #[test]
    fn keeps_fields_it_does_not_read() {
        let text = MINIMAL.replace(
            "tags: [pii]}",
            "tags: [pii], authoritativeDefinitions: [{url: 'https://example.com/email', type: businessDefinition}], x-steward-note: checked}",
        );
        let catalog = Catalog::from_sources([("orders.yaml", text)]).unwrap();
        let product = catalog.product("sales.orders").unwrap();
        let property = product.contract.schema[0]
            .properties
            .iter()
            .find(|p| p.name == "email")
            .unwrap();
        assert!(property.extra.contains_key("authoritativeDefinitions"));
        assert_eq!(
            property.extra["x-steward-note"],
            serde_yaml::Value::from("checked")
        );
    }

    #[test]
    fn rejects_mismatched_logical_type() {
        let text = MINIMAL.replace("logicalType: integer", "logicalType: string");
        let err = Catalog::from_sources([("orders.yaml", text)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema[0] (orders).properties[0] (order_id)"),
            "{err}"
        );
    }

    #[test]
    fn two_products_cannot_share_a_bucket_or_a_table_name() {
        let other = MINIMAL.replace("sales.orders", "sales.orders2");
        let err = Catalog::from_sources([("a.yaml", MINIMAL), ("b.yaml", other.as_str())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bucket `sales-orders`"), "{err}");
        let other = other.replace("s3://sales-orders/", "s3://sales-orders-2/");
        let err = Catalog::from_sources([("a.yaml", MINIMAL), ("b.yaml", other.as_str())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("table `sales.orders` is already published"),
            "{err}"
        );
    }

    #[test]
    fn views_carry_their_definition() {
        let view = r#"
  - name: big_orders
    physicalType: view
    customProperties: [{property: viewDefinition, value: "SELECT order_id FROM sales.orders"}]
    properties:
      - {name: order_id, physicalType: BIGINT, classification: internal}
"#;
        let catalog = Catalog::from_sources([("orders.yaml", format!("{MINIMAL}{view}"))]).unwrap();
        let (_, table) = catalog.table("sales", "big_orders").unwrap();
        assert_eq!(
            table.view.as_deref(),
            Some("SELECT order_id FROM sales.orders")
        );
        assert!(!catalog.table("sales", "orders").unwrap().1.is_view());
        let missing = view.replace("viewDefinition", "viewSql");
        let err = Catalog::from_sources([("orders.yaml", format!("{MINIMAL}{missing}"))])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema[1] (big_orders)") && err.contains("viewDefinition"),
            "{err}"
        );
    }

    #[test]
    fn prefix_without_model_puts_each_table_in_its_own_folder() {
        let text = MINIMAL.replace("s3://sales-orders/data/{model}/", "s3://sales-orders/v1/");
        let catalog = Catalog::from_sources([("orders.yaml", text)]).unwrap();
        let (product, table) = catalog.table("sales", "orders").unwrap();
        assert_eq!(product.location.table_prefix(table), "v1/orders/");
    }
}
