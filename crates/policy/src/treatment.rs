//! Column treatments: what a caller sees of one column.

use std::fmt;

use arrow::datatypes::DataType;
use meshgate_protect::{MaskKind, tokenized_type};

/// What a caller sees of a column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Treatment {
    /// The value as stored.
    Clear,
    /// The column does not exist for this caller.
    Hidden,
    /// A one-way mask.
    Mask(MaskKind),
    /// A keyed token in the named token domain.
    Tokenize(String),
}

impl Treatment {
    /// Parse `clear`, `hidden`, `mask(<kind>)`, `mask(redact, '<text>')` or
    /// `tokenize(<token domain>)`. Names are case-sensitive: a policy engine that accepts
    /// `Hidden` and `hidden` alike invites the casing bugs that silently disabled other
    /// engines' policies.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "clear" => return Ok(Self::Clear),
            "hidden" => return Ok(Self::Hidden),
            _ => {}
        }
        let call = |prefix: &str| -> Option<&str> { text.strip_prefix(prefix)?.strip_suffix(')') };
        if let Some(args) = call("mask(") {
            let (name, argument) = match args.split_once(',') {
                Some((name, arg)) => {
                    let arg = arg.trim();
                    let arg = arg
                        .strip_prefix('\'')
                        .and_then(|a| a.strip_suffix('\''))
                        .ok_or_else(|| {
                            format!("mask argument must be a quoted string, found `{arg}`")
                        })?;
                    (name.trim(), Some(arg))
                }
                None => (args.trim(), None),
            };
            return MaskKind::parse(name, argument).map(Self::Mask);
        }
        if let Some(domain) = call("tokenize(") {
            let domain = domain.trim();
            if domain.is_empty()
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(format!(
                    "token domain `{domain}` must be lowercase letters, digits, `-` or `_`"
                ));
            }
            return Ok(Self::Tokenize(domain.to_string()));
        }
        Err(format!(
            "unknown treatment `{text}` (expected clear, hidden, mask(<kind>) or tokenize(<token domain>); \
             mask kinds: {})",
            MaskKind::NAMES.join(", ")
        ))
    }

    /// The column's type under this treatment, or why it cannot apply. `None` for hidden.
    pub fn output_type(&self, input: &DataType) -> Result<Option<DataType>, String> {
        match self {
            Self::Clear => Ok(Some(input.clone())),
            Self::Hidden => Ok(None),
            Self::Mask(kind) => kind.output_type(input).map(Some),
            Self::Tokenize(_) => Ok(Some(tokenized_type(input))),
        }
    }

    /// Mask or token: the protections of which at most one may apply to a caller.
    pub fn is_protection(&self) -> bool {
        matches!(self, Self::Mask(_) | Self::Tokenize(_))
    }
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clear => f.write_str("clear"),
            Self::Hidden => f.write_str("hidden"),
            Self::Mask(MaskKind::Redact(text)) => write!(f, "mask(redact, '{text}')"),
            Self::Mask(kind) => write!(f, "mask({})", kind.name()),
            Self::Tokenize(domain) => write!(f, "tokenize({domain})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Treatment::parse("clear"), Ok(Treatment::Clear));
        assert_eq!(Treatment::parse("hidden"), Ok(Treatment::Hidden));
        assert_eq!(
            Treatment::parse("mask(email)"),
            Ok(Treatment::Mask(MaskKind::Email))
        );
        assert_eq!(
            Treatment::parse("mask(show-last-4)"),
            Ok(Treatment::Mask(MaskKind::ShowLast4))
        );
        assert_eq!(
            Treatment::parse("mask(redact, 'n/a')"),
            Ok(Treatment::Mask(MaskKind::Redact("n/a".into())))
        );
        assert_eq!(
            Treatment::parse("tokenize(reference)"),
            Ok(Treatment::Tokenize("reference".into()))
        );
        for t in [
            "clear",
            "hidden",
            "mask(year-only)",
            "mask(redact, 'x')",
            "tokenize(payments)",
        ] {
            assert_eq!(Treatment::parse(t).unwrap().to_string(), t);
        }
    }

    #[test]
    fn refuses_what_it_does_not_know_exactly() {
        assert!(Treatment::parse("Hidden").is_err());
        assert!(Treatment::parse("mask(Email)").is_err());
        assert!(
            Treatment::parse("mask(emial)")
                .unwrap_err()
                .contains("known: email")
        );
        assert!(Treatment::parse("mask(email, 'x')").is_err());
        assert!(Treatment::parse("tokenize()").is_err());
        assert!(Treatment::parse("drop").is_err());
    }
}
