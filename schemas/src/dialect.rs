//! Which SQL the warehouse speaks. Its own module, below both [`crate::ddl`] (the
//! objects) and [`crate::ledger`] (the SQL both loaders share), which each use it.

use std::fmt;
use std::str::FromStr;

/// The SQL dialect of a warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Redshift,
    Postgres,
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "redshift" => Ok(Dialect::Redshift),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            other => Err(format!(
                "unknown dialect '{other}': expected redshift or postgres"
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Redshift => "redshift",
            Dialect::Postgres => "postgres",
        })
    }
}
