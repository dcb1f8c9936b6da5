//! Secure mode (AT_SECURE): a set-user-ID program run by another user.
//! dynload then ignores its DYNLOAD_* variables (the load policy too) and
//! LD_LIBRARY_PATH, and honours $ORIGIN only at the start of a path
//! element, as glibc does.
//! The same library is opened by the glibc driver and by `dynload load`,
//! both made set-user-ID root and run as `nobody`; CI runs as root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{Lib, Set};

fn as_nobody(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .args(args);
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("setpriv");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copy `exe` into a world-readable directory, owned by root, with mode.
fn install(dir: &Path, exe: &Path, mode: u32) -> PathBuf {
    let to = dir.join(exe.file_name().unwrap());
    std::fs::copy(exe, &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

#[test]
fn setuid_programs_ignore_the_environment_and_untrusted_origin() {
    testkit::require_root("makes set-user-ID binaries");
    let set = Set::build("cli-secure", &[Lib::node("dep", 5).subdir("sub").no_log()]);
    // o finds dep through "$ORIGIN/sub" (allowed in secure mode) and p
    // through "/.$ORIGIN/sub" ($ORIGIN not at the start: dropped).
    set.compile(
        &Lib::node("o", 1)
            .no_log()
            .no_runpath()
            .flag("-Wl,-rpath,$ORIGIN/sub")
            .dep("dep"),
    );
    set.compile(
        &Lib::node("p", 2)
            .no_log()
            .no_runpath()
            .flag("-Wl,-rpath,/.$ORIGIN/sub")
            .dep("dep"),
    );
    let root = PathBuf::from(format!("/tmp/dynload-secure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("lib/sub")).unwrap();
    for d in [&root, &root.join("lib"), &root.join("lib/sub")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (name, sub) in [("o", ""), ("p", ""), ("dep", "sub/")] {
        let from = set.dir.join(sub).join(set.file(name));
        let to = root.join("lib").join(sub).join(set.file(name));
        std::fs::copy(&from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let lib = root.join("lib").to_string_lossy().into_owned();
    let o = format!("{lib}/{}", set.file("o"));
    let p = format!("{lib}/{}", set.file("p"));
    let bare = set.file("o");
    let env = [
        ("LD_LIBRARY_PATH", lib.as_str()),
        ("DYNLOAD_DEBUG", "libs,files"),
    ];

    for setuid in [false, true] {
        let mode = if setuid { 0o4755 } else { 0o755 };
        let driver = install(&root, &testkit::driver(), mode);
        let dynload = install(&root, Path::new(env!("CARGO_BIN_EXE_dynload")), mode);
        // p first: once o is loaded, its dependency is found by name.
        let (g, _) = as_nobody(
            &driver,
            &[
                &format!("open {bare} NOW"),
                &format!("open {p} NOW"),
                &format!("open {o} NOW"),
            ],
            &env,
        );
        let (d_bare, d_bare_err) = as_nobody(&dynload, &["load", &bare], &env);
        let (d_o, _) = as_nobody(&dynload, &["load", &o], &env);
        let (d_p, _) = as_nobody(&dynload, &["load", &p], &env);
        // The driver prints one line per open: bare name, p, o.
        let glibc_lines: Vec<&str> = g.lines().collect();
        let glibc_found = |i: usize| glibc_lines.get(i).is_some_and(|l| l.contains(": h"));
        // `dynload load` prints "NAME: /path" when it found the library and
        // "NAME: error: ..." when not; anything else (a crash, setpriv
        // failing) is neither.
        let dynload_found = |out: &str| {
            let found = out
                .lines()
                .next()
                .is_some_and(|l| l.contains(": /") && !l.contains(": error:"));
            let refused = out.contains(": error:");
            assert!(found != refused, "no answer from dynload load:\n{out}");
            found
        };
        // The bare name is only on LD_LIBRARY_PATH.
        assert_eq!(glibc_found(0), !setuid, "glibc, setuid={setuid}: {g}");
        assert_eq!(
            dynload_found(&d_bare),
            !setuid,
            "dynload, setuid={setuid}: {d_bare}"
        );
        // $ORIGIN at the start of an element works either way.
        assert!(
            glibc_found(2) && dynload_found(&d_o),
            "setuid={setuid}: {g}\n{d_o}"
        );
        // $ORIGIN later in an element is dropped in secure mode.
        assert_eq!(glibc_found(1), !setuid, "glibc, setuid={setuid}: {g}");
        assert_eq!(
            dynload_found(&d_p),
            !setuid,
            "dynload, setuid={setuid}: {d_p}"
        );
        // So is the load policy: one that allows nothing refuses o, except
        // in secure mode, where DYNLOAD_POLICY is ignored like the rest.
        let (d_policy, _) = as_nobody(
            &dynload,
            &["load", &o],
            &[("DYNLOAD_POLICY", "dir=/nonexistent")],
        );
        assert_eq!(
            dynload_found(&d_policy),
            setuid,
            "DYNLOAD_POLICY, setuid={setuid}: {d_policy}"
        );
        if !setuid {
            assert!(
                d_policy.contains("refused by dynload's load policy"),
                "{d_policy}"
            );
        }
        // DYNLOAD_DEBUG is ignored in secure mode.
        assert_eq!(
            d_bare_err.contains("find library="),
            !setuid,
            "setuid={setuid}: {d_bare_err}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
