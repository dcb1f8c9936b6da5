//! Dynamic string tokens: `$ORIGIN`, `$LIB` and `$PLATFORM` (and their
//! `${...}` forms) in DT_RPATH, DT_RUNPATH, DT_NEEDED and dlopen names.

/// What the tokens expand to for one object.
pub(crate) struct DstValues<'a> {
    /// The directory of the object (None when unknown).
    pub origin: Option<&'a [u8]>,
    /// `$PLATFORM`.
    pub platform: &'a [u8],
    /// `$LIB` (Debian: "lib/x86_64-linux-gnu").
    pub lib: &'a [u8],
    /// Secure mode (AT_SECURE).
    pub secure: bool,
    /// Is the object the main program? (Secure mode checks its $ORIGIN
    /// expansions against the trusted directories.)
    pub is_main: bool,
}

/// Debian's multiarch library directory, which glibc uses for `$LIB`.
pub(crate) const LIB: &[u8] = b"lib/x86_64-linux-gnu";

/// The trusted system directories, in glibc's order.
pub(crate) const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu/",
    "/usr/lib/x86_64-linux-gnu/",
    "/lib/",
    "/usr/lib/",
];

/// If `input` (just after a '$') starts with token `name`, the length of the
/// token (with braces if any).
fn is_dst(input: &[u8], name: &[u8]) -> usize {
    let (curly, rest) = match input.first() {
        Some(b'{') => (true, &input[1..]),
        _ => (false, input),
    };
    if !rest.starts_with(name) {
        return 0;
    }
    let next = rest.get(name.len()).copied();
    if curly {
        if next != Some(b'}') {
            return 0;
        }
        return name.len() + 2;
    }
    match next {
        Some(c) if c.is_ascii_alphanumeric() || c == b'_' => 0,
        _ => name.len(),
    }
}

/// Does `input` contain a token this loader knows?
pub(crate) fn has_dst(input: &[u8]) -> bool {
    // (Every load asks; `contains` finds the usual answer, no `$`, with
    // memchr instead of a test per byte.)
    input.contains(&b'$')
        && input.iter().enumerate().any(|(i, &c)| {
            c == b'$' && {
                let rest = &input[i + 1..];
                is_dst(rest, b"ORIGIN") != 0
                    || is_dst(rest, b"PLATFORM") != 0
                    || is_dst(rest, b"LIB") != 0
            }
        })
}

/// Expand the tokens of one path or name. `None` means the element must be
/// dropped: a token had no value, or secure mode forbids it (glibc returns
/// an empty string in those cases).
pub(crate) fn expand(input: &[u8], v: &DstValues<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() + 32);
    let mut check_trusted = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'$' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        let (len, value): (usize, Option<&[u8]>) = if let n @ 1.. = is_dst(rest, b"ORIGIN") {
            check_trusted = v.secure && v.is_main;
            // In secure mode $ORIGIN is honoured only as the first element
            // of the path, alone or followed by '/'.
            let at_start = i == 0 && matches!(rest.get(n), None | Some(b'/'));
            if v.secure && !at_start {
                (n, None)
            } else {
                (n, v.origin)
            }
        } else if let n @ 1.. = is_dst(rest, b"PLATFORM") {
            (n, Some(v.platform))
        } else if let n @ 1.. = is_dst(rest, b"LIB") {
            (n, Some(v.lib))
        } else {
            (0, None)
        };
        match (len, value) {
            (0, _) => {
                out.push(b'$');
                i += 1;
            }
            (n, Some(val)) => {
                out.extend_from_slice(val);
                i += 1 + n;
            }
            (_, None) => return None,
        }
    }
    if check_trusted && !is_trusted(&out) {
        return None;
    }
    Some(out)
}

/// glibc's `is_trusted_path_normalize`: after removing "." and ".."
/// components, is the path inside a system directory?
pub(crate) fn is_trusted(path: &[u8]) -> bool {
    if path.is_empty() {
        return false;
    }
    let mut n: Vec<u8> = Vec::with_capacity(path.len() + 1);
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'/' {
            let p1 = path.get(i + 1).copied();
            let p2 = path.get(i + 2).copied();
            let p3 = path.get(i + 3).copied();
            if p1 == Some(b'.') {
                if p2 == Some(b'.') && matches!(p3, None | Some(b'/')) {
                    while let Some(c) = n.pop() {
                        if c == b'/' {
                            break;
                        }
                    }
                    i += 3;
                    continue;
                } else if matches!(p2, None | Some(b'/')) {
                    i += 2;
                    continue;
                }
            }
            if n.last() == Some(&b'/') {
                i += 1;
                continue;
            }
        }
        n.push(path[i]);
        i += 1;
    }
    if n.last() != Some(&b'/') {
        n.push(b'/');
    }
    SYSTEM_DIRS.iter().any(|d| n.starts_with(d.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(secure: bool, is_main: bool) -> DstValues<'static> {
        DstValues {
            origin: Some(b"/opt/app/lib"),
            platform: b"haswell",
            lib: LIB,
            secure,
            is_main,
        }
    }

    #[test]
    fn expands_all_forms() {
        let v = vals(false, false);
        assert_eq!(expand(b"$ORIGIN/../x", &v).unwrap(), b"/opt/app/lib/../x");
        assert_eq!(expand(b"${ORIGIN}/x", &v).unwrap(), b"/opt/app/lib/x");
        assert_eq!(
            expand(b"/usr/$LIB/$PLATFORM", &v).unwrap(),
            b"/usr/lib/x86_64-linux-gnu/haswell"
        );
        // Not a token: an identifier continues, or an unknown name.
        assert_eq!(expand(b"$ORIGINAL/x", &v).unwrap(), b"$ORIGINAL/x");
        assert_eq!(expand(b"$HOME/x", &v).unwrap(), b"$HOME/x");
        assert!(has_dst(b"a/$LIB"));
        assert!(!has_dst(b"a/$LIBRARY"));
        assert!(!has_dst(b"/usr/lib/libz.so.1"));
        assert!(
            has_dst(b"$HOME/x/${ORIGIN}/y"),
            "a token after a `$` that is not one"
        );
    }

    #[test]
    fn unknown_origin_drops_the_element() {
        let v = DstValues {
            origin: None,
            ..vals(false, false)
        };
        assert_eq!(expand(b"$ORIGIN/x", &v), None);
    }

    #[test]
    fn secure_mode_restricts_origin() {
        let v = vals(true, false);
        assert_eq!(expand(b"$ORIGIN/x", &v).unwrap(), b"/opt/app/lib/x");
        assert_eq!(expand(b"/a/$ORIGIN", &v), None);
        // For the main program the result must also be trusted.
        let m = vals(true, true);
        assert_eq!(expand(b"$ORIGIN/x", &m), None);
        let m = DstValues {
            origin: Some(b"/usr/lib/x86_64-linux-gnu"),
            ..vals(true, true)
        };
        assert_eq!(
            expand(b"$ORIGIN/plugins", &m).unwrap(),
            b"/usr/lib/x86_64-linux-gnu/plugins"
        );
    }

    #[test]
    fn trusted_paths_are_normalised() {
        assert!(is_trusted(b"/usr/lib/x86_64-linux-gnu/foo"));
        assert!(is_trusted(b"/usr/lib/./x"));
        assert!(!is_trusted(b"/usr/lib/../../tmp"));
        assert!(!is_trusted(b"/tmp/lib"));
    }
}
