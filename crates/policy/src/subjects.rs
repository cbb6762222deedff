//! Subjects: how policies name callers, and the set of names one caller answers to.

use std::collections::BTreeSet;
use std::fmt;

use crate::principal::is_valid_name;

/// A subject as written in a policy: `*`, a principal id, or `role:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Anyone,
    Principal(String),
    Role(String),
}

impl Subject {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Anyone);
        }
        if let Some(role) = text.strip_prefix("role:") {
            return if is_valid_name(role) {
                Ok(Self::Role(role.to_string()))
            } else {
                Err(format!("`{text}`: role names use letters, digits and -_.@"))
            };
        }
        if is_valid_name(text) {
            Ok(Self::Principal(text.to_string()))
        } else {
            Err(format!(
                "`{text}` is not a subject (expected `*`, a principal id or `role:<name>`)"
            ))
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anyone => f.write_str("*"),
            Self::Principal(id) => f.write_str(id),
            Self::Role(role) => write!(f, "role:{role}"),
        }
    }
}

/// Everything one caller is, in one product domain: its id, the roles authentication gave
/// it, and the roles the access policy's `g` rules give it there. Both policy layers (casbin
/// and the row/column rules) match against this one set, so they cannot disagree about who
/// the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSet {
    pub(crate) id: String,
    pub(crate) roles: BTreeSet<String>,
}

impl SubjectSet {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn roles(&self) -> &BTreeSet<String> {
        &self.roles
    }

    pub fn matches(&self, subject: &Subject) -> bool {
        match subject {
            Subject::Anyone => true,
            Subject::Principal(id) => *id == self.id,
            Subject::Role(role) => self.roles.contains(role),
        }
    }

    /// Whether a rule with these `to` / `except` lists applies.
    pub fn selected_by(&self, to: &[Subject], except: &[Subject]) -> bool {
        to.iter().any(|s| self.matches(s)) && !except.iter().any(|s| self.matches(s))
    }

    /// The set as one string for the casbin matcher's `subjectIn`: `|id|role:a|role:b|`.
    /// Names cannot contain `|` (see `is_valid_name`), so the encoding is unambiguous.
    pub(crate) fn casbin_encoding(&self) -> String {
        let mut out = format!("|{}|", self.id);
        for role in &self.roles {
            out.push_str("role:");
            out.push_str(role);
            out.push('|');
        }
        out
    }
}

/// True when no caller can be selected by both rules: everything one rule selects is in the
/// other's `except` list. This is the load-time check that stops two masks meeting on one
/// column; it is conservative (it may refuse rules that never overlap in practice).
pub fn provably_disjoint(
    to_a: &[Subject],
    except_a: &[Subject],
    to_b: &[Subject],
    except_b: &[Subject],
) -> bool {
    let covered = |to: &[Subject], except: &[Subject]| {
        except.contains(&Subject::Anyone) || to.iter().all(|s| except.contains(s))
    };
    covered(to_a, except_b) || covered(to_b, except_a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(list: &[&str]) -> Vec<Subject> {
        list.iter().map(|s| Subject::parse(s).unwrap()).collect()
    }

    #[test]
    fn parses_subjects() {
        assert_eq!(Subject::parse("*"), Ok(Subject::Anyone));
        assert_eq!(
            Subject::parse("role:firmwide-risk"),
            Ok(Subject::Role("firmwide-risk".into()))
        );
        assert_eq!(
            Subject::parse("cib-reporting"),
            Ok(Subject::Principal("cib-reporting".into()))
        );
        assert!(Subject::parse("role:").is_err());
        assert!(Subject::parse("a|b").is_err());
        assert!(Subject::parse("a b").is_err());
    }

    #[test]
    fn disjointness_is_proved_only_through_except_lists() {
        let everyone_but_risk = (subjects(&["*"]), subjects(&["role:risk"]));
        let risk = (subjects(&["role:risk"]), vec![]);
        assert!(provably_disjoint(
            &everyone_but_risk.0,
            &everyone_but_risk.1,
            &risk.0,
            &risk.1
        ));
        assert!(provably_disjoint(
            &risk.0,
            &risk.1,
            &everyone_but_risk.0,
            &everyone_but_risk.1
        ));
        let two_roles = (subjects(&["role:risk", "role:ops"]), vec![]);
        assert!(!provably_disjoint(
            &everyone_but_risk.0,
            &everyone_but_risk.1,
            &two_roles.0,
            &two_roles.1
        ));
        let everyone = (subjects(&["*"]), vec![]);
        assert!(!provably_disjoint(
            &everyone.0,
            &everyone.1,
            &risk.0,
            &risk.1
        ));
    }

    #[test]
    fn selection_honours_except() {
        let set = SubjectSet {
            id: "ann".into(),
            roles: ["risk".to_string()].into(),
        };
        assert!(set.selected_by(&subjects(&["*"]), &[]));
        assert!(!set.selected_by(&subjects(&["*"]), &subjects(&["role:risk"])));
        assert!(set.selected_by(&subjects(&["ann"]), &subjects(&["role:ops"])));
        assert_eq!(set.casbin_encoding(), "|ann|role:risk|");
    }
}
