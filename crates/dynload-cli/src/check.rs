//! `dynload check`: report, by severity, what would break if the files
//! were loaded, without running any of them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use dynload::inspect::{Finding, Severity};
use serde_json::json;

use crate::host::{self, HostArgs};
use crate::python;
use crate::style::Style;

struct Target {
    /// The path to open.
    path: PathBuf,
    /// What the user named (a wheel or directory it came from).
    from: Option<String>,
    extension: bool,
}

/// Run the checks; returns the exit status: 2 errors, 1 warnings, 0 clean.
pub fn run(
    files: &[OsString],
    host_args: &HostArgs,
    json_out: bool,
    style: Style,
) -> Result<u8, String> {
    let mut extracted = Vec::new();
    let mut targets = Vec::new();
    for f in files {
        let p = Path::new(f);
        let named = f.to_string_lossy().into_owned();
        let dir = if p.extension().is_some_and(|e| e == "whl") && p.is_file() {
            let x = python::extract_wheel(p)?;
            let d = x.0.clone();
            extracted.push(x);
            Some(d)
        } else if p.is_dir() {
            Some(p.to_path_buf())
        } else {
            None
        };
        match dir {
            Some(d) => {
                let found = python::extensions_in(&d);
                if found.is_empty() {
                    return Err(format!("{named}: no Python extension modules in it"));
                }
                targets.extend(found.into_iter().map(|path| Target {
                    path,
                    from: Some(named.clone()),
                    extension: true,
                }));
            }
            None => {
                let extension = dynload::inspect::exported_symbols_of(p)
                    .is_ok_and(|x| python::is_extension(p, &x));
                targets.push(Target {
                    path: p.to_path_buf(),
                    from: None,
                    extension,
                });
            }
        }
    }
    let wants_python = host_args.python.is_some() || targets.iter().any(|t| t.extension);
    let py = if wants_python && host_args.host.is_none() {
        let named = host_args
            .python
            .clone()
            .unwrap_or_else(|| OsString::from("python3"));
        Some(host::query_python(&named)?)
    } else {
        None
    };
    // Each file is checked as the only one the host opens: a fresh
    // inspector each time, so that nothing of one file's tree (loaded, or
    // failed) shows in another's.
    let fresh = || host::inspector(host_args, py.as_ref());
    let host_ins = fresh()?;
    let mut reports = Vec::new();
    for t in &targets {
        let mut ins = fresh()?;
        let findings = match ins.open(t.path.as_os_str()) {
            Ok(root) => {
                let mut f = ins.check(root);
                if let (true, Some(py)) = (t.extension, &py) {
                    python::adjust(&ins, root, py, &mut f);
                }
                f
            }
            Err(e) => vec![Finding {
                severity: Severity::Error,
                code: "cannot-open",
                object: t.path.display().to_string(),
                symbol: None,
                message: e.to_string(),
                details: crate::host::open_error_details(&e, &t.path),
            }],
        };
        let mut findings = findings;
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        reports.push((t, findings));
    }
    let count = |s: Severity| {
        reports
            .iter()
            .flat_map(|(_, f)| f.iter())
            .filter(|f| f.severity == s)
            .count()
    };
    let (errors, warnings, infos) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    let host_shown = match (&py, host_ins.host()) {
        (Some(p), _) => format!("Python {} ({})", p.version, p.executable.display()),
        (None, Some(h)) => host_ins.object(h).path(),
        (None, None) => "a minimal C program (libc.so.6)".to_string(),
    };
    if json_out {
        let files: Vec<_> = reports
            .iter()
            .map(|(t, f)| {
                json!({
                    "file": t.path.display().to_string(),
                    "from": t.from,
                    "extension_module": t.extension,
                    "findings": f.iter().map(|x| json!({
                        "severity": x.severity.as_str(),
                        "code": x.code,
                        "object": x.object,
                        "symbol": x.symbol,
                        "message": x.message,
                        "details": x.details,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({
            "schema": "dynload-check/1",
            "host": host_shown,
            "files": files,
            "errors": errors,
            "warnings": warnings,
            "infos": infos,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    } else {
        println!("{}", style.dim(&format!("host: {host_shown}")));
        for (t, findings) in &reports {
            let kind = if t.extension {
                " (Python extension module)"
            } else {
                ""
            };
            let from = t
                .from
                .as_deref()
                .map(|f| format!(", from {f}"))
                .unwrap_or_default();
            println!("{}{kind}{from}", style.bold(&t.path.display().to_string()));
            if findings.is_empty() {
                println!("  {}", style.green("ok"));
            }
            for f in findings {
                let label = format!("{}[{}]", f.severity.as_str(), f.code);
                let label = match f.severity {
                    Severity::Error => style.red(&label),
                    Severity::Warning => style.yellow(&label),
                    Severity::Info => style.cyan(&label),
                };
                println!("  {label} {}", f.message);
                for d in &f.details {
                    println!("      {}", style.dim(d));
                }
            }
        }
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        println!(
            "{}, {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(infos, "note")
        );
    }
    drop(extracted);
    Ok(if errors > 0 {
        2
    } else if warnings > 0 {
        1
    } else {
        0
    })
}
