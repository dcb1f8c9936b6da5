//! The loader's error type. Its `Display` text is exactly what glibc's
//! `dlerror()` says for the same failure, because users search for those
//! strings; the extra fields say *why*, where dynload knows it.

use std::fmt;

/// What kind of failure an [`Error::Load`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not a valid ELF object for this machine, or is damaged.
    InvalidObject,
    /// The object uses something dynload refuses or does not support yet.
    Unsupported,
    /// Bad flags or arguments.
    InvalidArgument,
    /// The handle does not name an open object.
    NotOpen,
    /// A system call failed (the message ends with the system's reason).
    System,
    /// The load policy ([`crate::LoadPolicy`]) does not allow the file.
    Denied,
}

/// A failed dynamic-loading operation.
///
/// `to_string()` gives glibc's `dlerror()` text; [`Error::explain`] adds
/// what dynload knows about the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No file of this name was found, or the given path does not exist.
    #[error("{name}: cannot open shared object file: {reason}")]
    NotFound {
        /// The name as it was asked for.
        name: String,
        /// The system's reason (usually "No such file or directory").
        reason: String,
        /// Every path tried, in order.
        tried: Vec<String>,
    },
    /// A symbol has no definition in the scopes searched.
    #[error("{object}: undefined symbol: {symbol}{}", version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default())]
    UndefinedSymbol {
        /// The object whose reference (or handle) failed.
        object: String,
        /// The symbol's name.
        symbol: String,
        /// The version asked for, if any.
        version: Option<String>,
        /// The objects searched, in order.
        searched: Vec<String>,
        /// Definitions that exist but did not match (another version, a
        /// hidden version, a local symbol), as "object: symbol@version".
        near_misses: Vec<String>,
    },
    /// A dependency does not define a version the object requires.
    #[error("{library}: version `{version}' not found (required by {required_by})")]
    VersionNotFound {
        /// The dependency that lacks the version.
        library: String,
        /// The version required.
        version: String,
        /// The object that requires it.
        required_by: String,
        /// The versions the dependency does define.
        available: Vec<String>,
    },
    /// Any other failure, with glibc's text.
    #[error("{}", Prefixed(object, message))]
    Load {
        /// Its category.
        kind: ErrorKind,
        /// The object concerned (may be empty, as for "invalid mode parameter").
        object: String,
        /// glibc's message, after the object name.
        message: String,
        /// dynload's explanation, when it has one.
        why: Option<String>,
    },
}

/// An object's name as the bytes it was given as, made the `String` an
/// error names it by (lossily, as glibc prints it) only when an error is
/// made: every load passes its names down, and few loads fail.
#[derive(Clone, Copy)]
pub(crate) struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

impl From<Shown<'_>> for String {
    fn from(name: Shown<'_>) -> String {
        String::from_utf8_lossy(name.0).into_owned()
    }
}

struct Prefixed<'a>(&'a String, &'a String);

impl fmt::Display for Prefixed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(self.1)
        } else {
            write!(f, "{}: {}", self.0, self.1)
        }
    }
}

impl Error {
    pub(crate) fn load(
        kind: ErrorKind,
        object: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::Load {
            kind,
            object: object.into(),
            message: message.into(),
            why: None,
        }
    }

    pub(crate) fn invalid(object: impl Into<String>, message: impl Into<String>) -> Error {
        Error::load(ErrorKind::InvalidObject, object, message)
    }

    pub(crate) fn unsupported(object: impl Into<String>, message: impl Into<String>) -> Error {
        Error::load(ErrorKind::Unsupported, object, message)
    }

    /// A failed system call, formatted as glibc does: "OBJ: WHAT: strerror".
    pub(crate) fn system(object: impl Into<String>, what: &str, errno: i32) -> Error {
        Error::load(
            ErrorKind::System,
            object,
            format!("{what}: {}", strerror(errno)),
        )
    }

    /// A panic inside the loader (a bug), as an error for the caller.
    pub(crate) fn internal(payload: &(dyn std::any::Any + Send)) -> Error {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Error::load(
            ErrorKind::InvalidArgument,
            "",
            format!("dynload: internal error: {what}"),
        )
    }

    pub(crate) fn with_why(mut self, text: impl Into<String>) -> Error {
        if let Error::Load { why, .. } = &mut self {
            *why = Some(text.into());
        }
        self
    }

    /// The category of an [`Error::Load`].
    ///
    /// ```
    /// use dynload::{ErrorKind, Library, OpenFlags};
    /// let err = unsafe { Library::open("libz.so.1", OpenFlags::from_bits(0)) }.unwrap_err();
    /// assert_eq!(err.kind(), Some(ErrorKind::System));
    /// assert_eq!(err.to_string(), "libz.so.1: invalid mode for dlopen(): Invalid argument");
    /// ```
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Load { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// glibc's `dlerror()` text (the same as `to_string()`).
    pub fn dlerror_text(&self) -> String {
        self.to_string()
    }

    /// A longer explanation: the glibc text, then what dynload knows about
    /// the cause (paths tried, objects searched, versions available).
    ///
    /// ```
    /// use dynload::{Error, Library, OpenFlags};
    /// let err = unsafe { Library::open("libnot-here.so.1", OpenFlags::NOW) }.unwrap_err();
    /// assert!(matches!(err, Error::NotFound { .. }));
    /// let text = err.explain();
    /// assert!(text.starts_with("libnot-here.so.1: cannot open shared object file: No such file or directory"));
    /// assert!(text.contains("/lib/x86_64-linux-gnu/libnot-here.so.1"));
    /// ```
    pub fn explain(&self) -> String {
        let mut out = self.to_string();
        match self {
            Error::NotFound { tried, .. } => {
                if tried.is_empty() {
                    out.push_str("\n  no search path applied");
                } else {
                    out.push_str("\n  tried, in order:");
                    for t in tried {
                        out.push_str("\n    ");
                        out.push_str(t);
                    }
                }
            }
            Error::UndefinedSymbol {
                searched,
                near_misses,
                ..
            } => {
                out.push_str("\n  searched, in order:");
                for s in searched {
                    out.push_str("\n    ");
                    out.push_str(s);
                }
                if !near_misses.is_empty() {
                    out.push_str("\n  definitions that did not match:");
                    for s in near_misses {
                        out.push_str("\n    ");
                        out.push_str(s);
                    }
                }
            }
            Error::VersionNotFound {
                library, available, ..
            } => {
                if available.is_empty() {
                    out.push_str(&format!("\n  {library} defines no versions"));
                } else {
                    out.push_str(&format!("\n  {library} defines: {}", available.join(", ")));
                }
            }
            Error::Load { why: Some(why), .. } => {
                out.push_str("\n  ");
                out.push_str(why);
            }
            Error::Load { .. } => {}
        }
        out
    }
}

/// The system's text for an errno value, as `strerror` gives it.
pub(crate) fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Result alias for loader operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_glibc() {
        let e = Error::NotFound {
            name: "libnope.so".into(),
            reason: strerror(libc::ENOENT),
            tried: vec![],
        };
        assert_eq!(
            e.to_string(),
            "libnope.so: cannot open shared object file: No such file or directory"
        );
        let e = Error::UndefinedSymbol {
            object: "./libx.so".into(),
            symbol: "f".into(),
            version: Some("V2".into()),
            searched: vec![],
            near_misses: vec![],
        };
        assert_eq!(e.to_string(), "./libx.so: undefined symbol: f, version V2");
        let e = Error::VersionNotFound {
            library: "/lib/x86_64-linux-gnu/libc.so.6".into(),
            version: "GLIBC_2.99".into(),
            required_by: "./liby.so".into(),
            available: vec![],
        };
        assert_eq!(
            e.to_string(),
            "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.99' not found (required by ./liby.so)"
        );
        assert_eq!(
            Error::load(ErrorKind::InvalidArgument, "", "invalid mode parameter").to_string(),
            "invalid mode parameter"
        );
        assert_eq!(
            Error::system(
                "./a.so",
                "cannot enable executable stack as shared object requires",
                libc::EINVAL
            )
            .to_string(),
            "./a.so: cannot enable executable stack as shared object requires: Invalid argument"
        );
    }
}
