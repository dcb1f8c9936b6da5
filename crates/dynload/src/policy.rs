//! An optional load policy, beyond what glibc offers: only files in
//! allowed directories, or with allowed SHA-256 digests, may be loaded.
//! For plugin hosts that must load only what they ship.
//!
//! The check is made on the file the search found, through the descriptor
//! it was opened with — the one that is then mapped — so the file checked
//! is the file loaded (no check-then-reopen race): its directory is the
//! kernel's path for that descriptor (symbolic links resolved), its digest
//! is computed from that descriptor's contents. A refused file ends the
//! load (the search does not go on to look for an allowed copy).
//! glibc's own libraries (the C runtime), which dynload leaves to glibc,
//! are glibc's business and not checked.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};

/// Which files may be loaded: a file is allowed if it lies in one of the
/// allowed directories (at any depth), or if its SHA-256 digest is one of
/// the allowed digests. An empty policy allows nothing.
///
/// ```no_run
/// use dynload::{Library, LoadPolicy, OpenFlags};
/// let policy = LoadPolicy::new()
///     .allow_directory("/opt/myapp/plugins")
///     .allow_sha256("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")?;
/// dynload::set_load_policy(Some(policy));
/// // Refused unless in /opt/myapp/plugins or with that digest:
/// let lib = unsafe { Library::open("/tmp/other.so", OpenFlags::NOW) };
/// assert!(lib.is_err());
/// # Ok::<(), dynload::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPolicy {
    dirs: Vec<PathBuf>,
    digests: Vec<[u8; 32]>,
    /// Set when the policy came from a malformed DYNLOAD_POLICY: every
    /// load is refused with this reason (fail closed).
    broken: Option<String>,
}

impl LoadPolicy {
    /// A policy that allows nothing yet.
    pub fn new() -> LoadPolicy {
        LoadPolicy::default()
    }

    /// Allow files in `dir` and below it. Symbolic links in `dir` are
    /// resolved now, as the kernel resolves them in a file's path.
    pub fn allow_directory(mut self, dir: impl AsRef<Path>) -> LoadPolicy {
        let dir = dir.as_ref();
        self.dirs
            .push(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
        self
    }

    /// Allow the file whose SHA-256 digest is `hex` (64 hexadecimal digits).
    pub fn allow_sha256(mut self, hex: &str) -> Result<LoadPolicy, Error> {
        let digest = parse_digest(hex).ok_or_else(|| {
            Error::load(
                ErrorKind::InvalidArgument,
                "",
                format!("invalid SHA-256 digest in the load policy: {hex}"),
            )
        })?;
        self.digests.push(digest);
        Ok(self)
    }

    /// Parse the DYNLOAD_POLICY syntax: entries separated by ';', each
    /// `dir=PATH` or `sha256=HEX`.
    pub fn parse(spec: &str) -> Result<LoadPolicy, String> {
        let mut p = LoadPolicy::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some(("dir", path)) if path.starts_with('/') => p = p.allow_directory(path),
                Some(("dir", path)) => {
                    return Err(format!(
                        "`dir={path}': the directory must be an absolute path"
                    ))
                }
                Some(("sha256", hex)) => {
                    let d = parse_digest(hex)
                        .ok_or_else(|| format!("`sha256={hex}': not 64 hexadecimal digits"))?;
                    p.digests.push(d);
                }
                _ => return Err(format!("`{entry}': expected dir=PATH or sha256=HEX")),
            }
        }
        Ok(p)
    }

    /// Check the opened file `file` (found at `path`) against the policy.
    pub(crate) fn check(&self, file: &std::fs::File, path: &str) -> Result<(), Error> {
        let deny = |why: String| {
            Error::load(
                ErrorKind::Denied,
                path,
                "cannot open shared object file: Operation not permitted",
            )
            .with_why(why)
        };
        if let Some(reason) = &self.broken {
            return Err(deny(format!(
                "DYNLOAD_POLICY is malformed ({reason}), so every load is refused"
            )));
        }
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .unwrap_or_else(|_| PathBuf::from(path));
        if self.dirs.iter().any(|d| real.starts_with(d)) {
            return Ok(());
        }
        let digest = if self.digests.is_empty() {
            None
        } else {
            Some(sha256_of(file).map_err(|e| {
                Error::system(
                    path,
                    "cannot read file data",
                    e.raw_os_error().unwrap_or(libc::EIO),
                )
            })?)
        };
        if digest.is_some_and(|d| self.digests.contains(&d)) {
            return Ok(());
        }
        let mut why = format!("refused by dynload's load policy: {}", real.display());
        if self.dirs.is_empty() {
            why.push_str(" (no directory is allowed)");
        } else {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            why.push_str(&format!(
                " is not in an allowed directory ({})",
                dirs.join(", ")
            ));
        }
        match digest {
            Some(d) => why.push_str(&format!(
                ", and its SHA-256 {} is not an allowed digest",
                hex(&d)
            )),
            None => why.push_str(", and no digest is allowed"),
        }
        Err(deny(why))
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of the whole file behind `file` (read by position, so the
/// descriptor's offset does not matter).
fn sha256_of(file: &std::fs::File) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    Ok(hasher.finalize().into())
}

static TEXTREL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(UNSET);
const UNSET: u8 = 2;

/// Allow (or refuse again) objects with text relocations (`DT_TEXTREL`),
/// which dynload refuses by default; `DYNLOAD_ALLOW_TEXTREL=1` does the
/// same from the environment (ignored in secure mode). While such an
/// object is relocated its code pages are writable and not executable
/// (dynload never maps a page writable and executable), so an object that
/// also has IFUNC symbols of its own is still refused.
pub fn allow_text_relocations(allow: bool) {
    TEXTREL.store(u8::from(allow), std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn text_relocations_allowed() -> bool {
    match TEXTREL.load(std::sync::atomic::Ordering::Relaxed) {
        UNSET => crate::process::settings().allow_textrel,
        v => v == 1,
    }
}

static POLICY: RwLock<Option<Arc<LoadPolicy>>> = RwLock::new(None);
static FROM_ENV: OnceLock<()> = OnceLock::new();

/// The policy from DYNLOAD_POLICY (ignored in secure mode), applied once
/// before the first check unless the Rust API set one already.
fn init_from_env() {
    FROM_ENV.get_or_init(|| {
        let Some(spec) = crate::process::settings().policy.as_deref() else {
            return;
        };
        let policy =
            LoadPolicy::parse(&String::from_utf8_lossy(spec)).unwrap_or_else(|why| LoadPolicy {
                broken: Some(why),
                ..LoadPolicy::default()
            });
        let mut slot = POLICY.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(Arc::new(policy));
        }
    });
}

/// Set (or, with `None`, remove) the process-wide load policy. It applies
/// to every later load through dynload, from the Rust API and the C ABI
/// alike, dependencies included; objects already loaded stay. The
/// `DYNLOAD_POLICY` environment variable (`dir=PATH;sha256=HEX;...`) sets
/// one at start-up, except in secure mode (set-user-ID programs), where it
/// is ignored like every `DYNLOAD_*` variable; this function replaces it.
pub fn set_load_policy(policy: Option<LoadPolicy>) {
    FROM_ENV.get_or_init(|| ());
    *POLICY.write().unwrap_or_else(|p| p.into_inner()) = policy.map(Arc::new);
}

/// Check a file about to be mapped against the policy, if there is one.
pub(crate) fn check(file: &std::fs::File, path: &[u8]) -> Result<(), Error> {
    init_from_env();
    let policy = POLICY.read().unwrap_or_else(|p| p.into_inner()).clone();
    match policy {
        Some(p) => p.check(file, &String::from_utf8_lossy(path)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_syntax() {
        let p = LoadPolicy::parse(
            "dir=/nonexistent/plugins; sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        )
        .unwrap();
        assert_eq!(p.dirs, [PathBuf::from("/nonexistent/plugins")]);
        assert_eq!(
            hex(&p.digests[0]),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert!(LoadPolicy::parse("dir=relative").is_err());
        assert!(LoadPolicy::parse("sha256=abc").is_err());
        assert!(LoadPolicy::parse("hash=x").is_err());
        assert_eq!(LoadPolicy::parse("").unwrap(), LoadPolicy::new());
    }

    #[test]
    fn digests_of_files() {
        let path = std::env::temp_dir().join(format!("dynload-policy-{}", std::process::id()));
        std::fs::write(&path, b"test").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(
            hex(&sha256_of(&f).unwrap()),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let _ = std::fs::remove_file(&path);
    }
}
