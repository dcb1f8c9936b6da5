//! What `check` knows about Python extension modules: which files are
//! extension modules, wheels and directories of them, and the mistakes
//! that break them (libpython linked in, a wrong init function name, API
//! the interpreter does not have).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use dynload::inspect::{Finding, Inspector, ObjectId, Severity};

use crate::host::Interpreter;

/// Is the file at `path`, with these exports, an extension module? It
/// exports the init function of the module its name says, or it has an
/// extension's name (an ABI tag) and exports some init function. libpython
/// itself (which exports PyInit_ functions of its built-in modules) is not.
pub fn is_extension(path: &Path, exports: &[String]) -> bool {
    let text = path.to_string_lossy();
    let file = text.rsplit('/').next().unwrap_or(&text);
    if file.starts_with("libpython") {
        return false;
    }
    let module = module_name(&text);
    let own = [format!("PyInit_{module}"), format!("PyModExport_{module}")];
    if exports.iter().any(|n| own.contains(n)) {
        return true;
    }
    let tagged = abi_tag(&text).is_some_and(|t| t.starts_with("cpython-") || t == "abi3");
    tagged
        && exports
            .iter()
            .any(|n| n.starts_with("PyInit_") || n.starts_with("PyModExport_"))
}

/// A directory this run extracted a wheel into, removed at the end.
pub struct Extracted(pub PathBuf);

impl Drop for Extracted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unpack a wheel (a zip file) into a fresh temporary directory.
pub fn extract_wheel(wheel: &Path) -> Result<Extracted, String> {
    let file = std::fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format!("{}: not a wheel (zip): {e}", wheel.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("dynload-check-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?
        .keep();
    archive
        .extract(&dir)
        .map_err(|e| format!("{}: cannot extract: {e}", wheel.display()))?;
    Ok(Extracted(dir))
}

/// Every extension module under `dir`, sorted.
pub fn extensions_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && p.extension() == Some(OsStr::new("so"))
                && dynload::inspect::exported_symbols_of(&p).is_ok_and(|x| is_extension(&p, &x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module name Python imports a file as: its name up to the first dot.
fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file)
}

/// The ABI tag of a file name: "cpython-311-x86_64-linux-gnu" of
/// "m.cpython-311-x86_64-linux-gnu.so", "abi3", or None for plain ".so".
fn abi_tag(path: &str) -> Option<&str> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let rest = file.strip_suffix(".so")?;
    let dot = rest.find('.')?;
    Some(&rest[dot + 1..])
}

/// Add the Python findings for extension module `root` and turn generic
/// ones into Python ones where that explains more.
pub fn adjust(ins: &Inspector, root: ObjectId, py: &Interpreter, findings: &mut Vec<Finding>) {
    let o = ins.object(root);
    let path = o.path();
    let module = module_name(&path).to_string();
    let interp = py.executable.display().to_string();
    let own_tag = py
        .ext_suffix
        .trim_start_matches('.')
        .trim_end_matches(".so")
        .to_string();
    let tag = abi_tag(&path).map(str::to_string);

    // The init function Python calls.
    if !o.exports(&format!("PyInit_{module}")) && !o.exports(&format!("PyModExport_{module}")) {
        let others: Vec<String> = o
            .exported_symbols()
            .into_iter()
            .filter(|n| n.starts_with("PyInit_") || n.starts_with("PyModExport_"))
            .collect();
        findings.push(Finding {
            severity: Severity::Error,
            code: "missing-init-function",
            object: path.clone(),
            symbol: Some(format!("PyInit_{module}")),
            message: format!(
                "{path}: PyInit_{module} not found: Python imports this file as module `{module}` and calls PyInit_{module}"
            ),
            details: vec![format!(
                "it exports {}. Rename the file to match (MODULE.{}.so), or give the module the file's name (PyO3: the #[pymodule] function's name, or #[pyo3(name = \"{module}\")]; C: the PyInit_ function and PyModuleDef.m_name)",
                if others.is_empty() { "no PyInit_ function at all".to_string() } else { others.join(", ") },
                own_tag
            )],
        });
    }

    // The file name's ABI tag against this interpreter's.
    if let Some(t) = &tag {
        if t != &own_tag && t != "abi3" {
            findings.push(Finding {
                severity: Severity::Warning,
                code: "abi-tag-mismatch",
                object: path.clone(),
                symbol: None,
                message: format!(
                    "{path}: built for {t}, but {interp} (Python {}) imports only *{} and *.abi3.so files",
                    py.version, py.ext_suffix
                ),
                details: vec!["`import` will not find this file under this interpreter; build it for this Python, or as abi3 (the stable ABI)".into()],
            });
        }
    }

    // libpython in DT_NEEDED, anywhere in the tree dynload would load.
    for id in ins.search_list(root) {
        let obj = ins.object(id);
        if obj.is_host() && id != root {
            continue;
        }
        for dep in obj.dependencies() {
            if !dep.name.starts_with("libpython") {
                continue;
            }
            let target = match &dep.target {
                Ok((t, _)) => Some(ins.object(*t)),
                Err(_) => None,
            };
            let here = match target {
                Some(t) if t.is_host() => format!(
                    "Under {interp} it happens to be the interpreter's own libpython ({}), already loaded, so nothing is duplicated here; under an interpreter with libpython inside the executable (Debian's and Ubuntu's /usr/bin/python3, manylinux, conda's) a second copy would be mapped.",
                    t.path()
                ),
                Some(t) => format!(
                    "Under {interp}, whose Python API is in the executable itself, importing it maps a second interpreter: {}.",
                    t.path()
                ),
                None => format!(
                    "Under {interp} it is not even found, so the import fails with \"{}: cannot open shared object file\".",
                    dep.name
                ),
            };
            findings.push(Finding {
                severity: Severity::Error,
                code: "links-libpython",
                object: obj.path(),
                symbol: None,
                message: format!(
                    "{}: an extension module must not link libpython ({} is in DT_NEEDED)",
                    obj.path(),
                    dep.name
                ),
                details: vec![
                    "Why it crashes: the interpreter that imports the module already provides the Python API. A second libpython in the process is a second interpreter with its own state: its own GIL that the running thread does not hold, its own type objects (so `int` there is not `int` here), its own allocator and module table. Code that reaches it crashes, deadlocks, or fails with 'object has wrong type'.".into(),
                    "Why it may appear to work: the interpreter's executable is in the global scope, which is searched first, so most Py* references still bind to the running interpreter; only what binds inside the second copy (its own internal references, its static state) goes wrong, often much later.".into(),
                    here,
                    "Fix: do not link libpython. PyO3: build with the extension-module setting (PYO3_BUILD_EXTENSION_MODULE=1, which maturin sets; older PyO3: the `extension-module` feature); setuptools, meson-python and scikit-build do the right thing; by hand: drop -lpython3.x from the link command.".into(),
                ],
            });
        }
    }

    // Python API the interpreter does not provide.
    for f in findings.iter_mut() {
        if f.code != "undefined-symbol" {
            continue;
        }
        let Some(sym) = f.symbol.clone() else {
            continue;
        };
        if !(sym.starts_with("Py") || sym.starts_with("_Py")) {
            continue;
        }
        f.code = "python-api-missing";
        f.message = format!(
            "{}: {sym} is not provided by {interp} (Python {}{})",
            f.object,
            py.version,
            if py.free_threaded {
                ", free-threaded"
            } else {
                ""
            }
        );
        let why = match &tag {
            Some(t) if t.contains("t-") && !py.free_threaded => format!(
                "the file is built for the free-threaded ABI ({t}), which this interpreter does not have"
            ),
            Some(t) if t != &own_tag && t != "abi3" => format!(
                "the file is built for {t}, another Python version; this interpreter is {own_tag}"
            ),
            Some(t) if t == "abi3" => {
                "the file uses the stable ABI (abi3) but calls a function newer than this interpreter, or one outside the stable ABI".into()
            }
            _ => "it was built against another Python version's headers, or against the free-threaded ABI".to_string(),
        };
        f.details.insert(0, why);
    }
}
