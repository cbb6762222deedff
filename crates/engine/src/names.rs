//! The names the mesh answers to, in one place: the catalog, the mesh catalog's own schema,
//! and the kinds of table every listing reports (SQL `information_schema`, `mesh_catalog`,
//! Flight SQL `GetTables` and `GetTableTypes`).

/// The only catalog: `mesh`.
pub const CATALOG: &str = "mesh";

/// The schema the mesh catalog's own tables live in.
pub const SYSTEM_SCHEMA: &str = "mesh_catalog";

/// What kind of table a listing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableKind {
    /// A product table, read from its lake through the caller's policy.
    Table,
    /// A published view, planned as the caller.
    View,
    /// A `mesh_catalog` table, built for the caller from the catalog and governance store.
    System,
}

impl TableKind {
    /// Every kind, in the order catalogs list them.
    pub const ALL: [TableKind; 3] = [TableKind::System, TableKind::Table, TableKind::View];

    /// The name catalogs report (`TABLE`, `VIEW`, `SYSTEM TABLE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "TABLE",
            Self::View => "VIEW",
            Self::System => "SYSTEM TABLE",
        }
    }
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
