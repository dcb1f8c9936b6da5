//! `dynload why SYMBOL`: every object of every scope a lookup walks, in
//! order, and what each has of the symbol.

use super::{version_suffix, Inspector, ObjectId};
use crate::elf::symbols::NameHash;
use crate::elf::versions::VersionEntry;
use crate::elf::{elf, SymExt};
use crate::link::{lookup_in_object, Flags};

/// What one object of a scope has of the symbol.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The object's path.
    pub object: String,
    /// `binds`, `shadowed`, `absent`, `undefined`, `not-exported`,
    /// `hidden-version`, `wrong-version` or `not-a-definition`.
    pub status: &'static str,
    /// The symbol entry concerned (`name@@VERSION`), or the explanation.
    pub detail: String,
}

/// One scope of the lookup.
#[derive(Debug, Clone)]
pub struct ScopeReport {
    /// "global scope", "local scope of X", "the object itself (DT_SYMBOLIC)".
    pub name: String,
    /// Its objects in search order (each object once over all scopes).
    pub candidates: Vec<Candidate>,
}

/// The answer to `why`.
#[derive(Debug, Clone)]
pub struct Why {
    /// The symbol asked about.
    pub symbol: String,
    /// The version looked for, and where it came from.
    pub version: Option<String>,
    /// Whose point of view (a path, or "the host program").
    pub from: String,
    /// The scopes in order.
    pub scopes: Vec<ScopeReport>,
    /// The object and entry the symbol binds to.
    pub binds_to: Option<(String, String)>,
}

impl Inspector {
    /// Which definition `symbol` binds to from `from`'s point of view (a
    /// reference from that object; without `from`, a `dlsym` on the
    /// global scope), and what every object searched has of it.
    /// `version` overrides the version `from` asks for.
    pub fn why(
        &self,
        symbol: &str,
        version: Option<&str>,
        from: Option<ObjectId>,
        deepbind: bool,
    ) -> Why {
        let name = symbol.as_bytes();
        let mut wanted: Option<VersionEntry> = version.map(|v| VersionEntry {
            name: v.as_bytes(),
            hash: crate::elf::hash::elf_hash(v.as_bytes()),
            hidden: false,
        });
        let mut flags = Flags::default();
        let (scopes, from_name) = match from {
            Some(id) => {
                let o = &self.objects[id];
                if wanted.is_none() {
                    // The version this object's own reference asks for: a
                    // relocation's symbol (which may be one it defines), or
                    // failing that an undefined symbol of that name.
                    let syms = &o.read.view.symbols;
                    let referenced = self
                        .references(id)
                        .into_iter()
                        .map(|r| r.sym)
                        .find(|&i| syms.name(syms.sym(i)) == name)
                        .or_else(|| {
                            syms.iter()
                                .find(|(_, s)| s.is_undefined() && syms.name(s) == name)
                                .map(|(i, _)| i)
                        });
                    if let Some(i) = referenced {
                        wanted = syms.versym(i).and_then(|v| o.read.view.versions.entry(v));
                    }
                }
                (self.scopes_of(id, deepbind), o.path())
            }
            None => {
                flags.return_newest = true;
                (
                    vec![("global scope".to_string(), self.global.clone())],
                    "the host program (dlsym on RTLD_DEFAULT)".to_string(),
                )
            }
        };
        let mut seen = Vec::new();
        let mut binds_to = None;
        let mut reports = Vec::new();
        for (scope_name, list) in scopes {
            let mut candidates = Vec::new();
            for id in list {
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
                let o = &self.objects[id];
                let view = &o.read.view;
                let mut hash = NameHash::new(name);
                let (status, detail) =
                    match lookup_in_object(view, name, &mut hash, wanted.as_ref(), flags) {
                        Some(i) => {
                            let s = view.symbols.sym(i);
                            let mut detail =
                                format!("{symbol}{}", version_suffix(view, view.symbols.versym(i)));
                            if s.bind() == elf::STB_WEAK {
                                detail.push_str(" (weak: still taken, the first definition wins)");
                            }
                            if s.visibility() == elf::STV_PROTECTED {
                                detail.push_str(" (protected: its own references bind to it)");
                            }
                            if binds_to.is_none() {
                                binds_to = Some((o.path(), detail.clone()));
                                ("binds", detail)
                            } else {
                                ("shadowed", detail)
                            }
                        }
                        None => classify(view, name, symbol, wanted.as_ref()),
                    };
                candidates.push(Candidate {
                    object: o.path(),
                    status,
                    detail,
                });
            }
            reports.push(ScopeReport {
                name: scope_name,
                candidates,
            });
        }
        Why {
            symbol: symbol.to_string(),
            version: wanted.map(|w| String::from_utf8_lossy(w.name).into_owned()),
            from: from_name,
            scopes: reports,
            binds_to,
        }
    }
}

/// Why an object that was searched did not provide the symbol.
fn classify(
    view: &crate::host::View,
    name: &[u8],
    symbol: &str,
    wanted: Option<&VersionEntry>,
) -> (&'static str, String) {
    let syms = &view.symbols;
    let mut entries = Vec::new();
    let mut hash = NameHash::new(name);
    syms.find(name, &mut hash, |i, _| {
        entries.push(i);
        false
    });
    // Symbols the hash table does not reach (local ones) are not
    // candidates for glibc either; say so if that is all there is.
    if entries.is_empty() {
        // Undefined symbols are not in a GNU hash table: scan for a
        // reference.
        if syms
            .iter()
            .any(|(_, s)| s.is_undefined() && syms.name(s) == name)
        {
            return ("undefined", "only references it".to_string());
        }
        return ("absent", String::new());
    }
    let shown = |i: u32| format!("{symbol}{}", version_suffix(view, syms.versym(i)));
    let defined: Vec<u32> = entries
        .iter()
        .copied()
        .filter(|&i| !syms.sym(i).is_undefined())
        .collect();
    let Some(&first) = defined.first() else {
        return ("undefined", "only references it".to_string());
    };
    if let Some(&i) = defined.iter().find(|&&i| {
        let s = syms.sym(i);
        s.binds_locally() || s.bind() == elf::STB_LOCAL
    }) {
        return (
            "not-exported",
            format!(
                "{} (hidden or local: binds only inside its object)",
                shown(i)
            ),
        );
    }
    if let Some(w) = wanted {
        if let Some(&i) = defined.iter().find(|&&i| {
            let (_, n) = syms
                .versym(i)
                .map(|v| view.versions.at(v))
                .unwrap_or((0, b""));
            n != &*w.name
        }) {
            return (
                "wrong-version",
                format!(
                    "{} (version {} wanted)",
                    shown(i),
                    String::from_utf8_lossy(w.name)
                ),
            );
        }
    }
    if let Some(&i) = defined
        .iter()
        .find(|&&i| syms.versym(i).is_some_and(|v| v & 0x8000 != 0))
    {
        return (
            "hidden-version",
            format!(
                "{} (not the default version: only a request for that version gets it)",
                shown(i)
            ),
        );
    }
    if defined.len() > 1 && wanted.is_none() {
        return (
            "hidden-version",
            format!(
                "{} versions and none is the default: an unversioned request is ambiguous",
                defined.len()
            ),
        );
    }
    (
        "not-a-definition",
        format!("{} (value 0 or a type lookups skip)", shown(first)),
    )
}
