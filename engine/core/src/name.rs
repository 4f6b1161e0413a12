//! Interned names of tenants, groups, locations and rules.
//!
//! Decisions name the rule and location that decided them. Interned names are `Copy` and
//! compare by pointer, so naming costs nothing on the hot path and no reference count is
//! shared between threads. A name is interned once, by configuration or an administrator,
//! and lives for the rest of the process; request input is only ever looked up, never
//! interned, so an attacker cannot grow the set.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

/// An interned name.
#[derive(Clone, Copy)]
pub struct Name(&'static str);

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a string cannot be a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("name is empty")]
    Empty,
    /// Over [`MAX_NAME_LEN`] bytes.
    #[error("name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    /// Holds a control character, or white space at either end.
    #[error("name {0:?} has control characters or surrounding white space")]
    Unprintable(String),
    /// Holds an invisible formatting character (zero-width, direction-changing), which
    /// would let two names look alike.
    #[error("name {0:?} has invisible formatting characters (zero-width or direction marks)")]
    Invisible(String),
}

fn table() -> &'static Mutex<HashSet<&'static str>> {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Checks that `s` is usable as a name (also for user names, which are not interned).
pub fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if s.chars().any(char::is_control) || s.trim() != s {
        return Err(NameError::Unprintable(s.to_owned()));
    }
    if s.chars().any(is_invisible) {
        return Err(NameError::Invisible(s.to_owned()));
    }
    Ok(())
}

/// Invisible formatting characters (Unicode's default-ignorable format characters that
/// change no glyph): zero-width spaces and joiners, direction marks, embeddings, overrides
/// and isolates, word joiners and invisible operators, the byte-order mark, soft hyphen,
/// the Arabic letter mark, the Mongolian vowel separator, and tags.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

impl Name {
    /// Interns `s` after validating it.
    pub fn intern(s: &str) -> Result<Self, NameError> {
        validate(s)?;
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&existing) = t.get(s) {
            return Ok(Self(existing));
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        t.insert(leaked);
        Ok(Self(leaked))
    }

    /// A name built into the engine (`"elsewhere"`, `"default"`, ...).
    pub(crate) fn builtin(s: &'static str) -> Self {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        match t.get(s) {
            Some(&existing) => Self(existing),
            None => {
                t.insert(s);
                Self(s)
            }
        }
    }

    /// The text of the name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        // INVARIANT: equal names are interned to the same allocation.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_names_are_refused() {
        for s in [
            "ka\u{200B}ri",
            "\u{202E}irak",
            "kari\u{200D}",
            "\u{FEFF}kari",
            "ka\u{00AD}ri",
            "kari\u{2066}x\u{2069}",
        ] {
            assert!(matches!(validate(s), Err(NameError::Invisible(_))), "{s:?}");
        }
        // Letters of any script are names.
        for s in ["kari", "Åse Øvrebø", "أحمد", "李雷", "kari@kommune.no"] {
            assert_eq!(validate(s), Ok(()), "{s:?}");
        }
    }

    #[test]
    fn interning_dedupes_and_compares_by_identity() {
        let a = Name::intern("office").unwrap();
        let b = Name::intern(&String::from("office")).unwrap();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, Name::intern("home").unwrap());
        assert_eq!(Name::builtin("office"), a);
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Name::intern(""), Err(NameError::Empty));
        assert_eq!(Name::intern(&"x".repeat(129)), Err(NameError::TooLong));
        assert!(matches!(
            Name::intern("a\u{0}b"),
            Err(NameError::Unprintable(_))
        ));
        assert!(matches!(
            Name::intern(" lead"),
            Err(NameError::Unprintable(_))
        ));
        assert!(matches!(
            Name::intern("line\nbreak"),
            Err(NameError::Unprintable(_))
        ));
        assert!(Name::intern("legekontor-ø").is_ok());
    }
}
