//! `dynload tree`: the dependency tree dynload would load, with the reason
//! each object was found, and on a miss every place tried, in order.

use std::collections::HashSet;
use std::ffi::OsString;

use dynload::inspect::{Dependency, Inspector, ObjectId, Reason};
use serde_json::{json, Value};

use crate::style::Style;

pub struct TreeOptions {
    pub all: bool,
    pub paths: bool,
    pub json: bool,
}

/// Print the trees; the exit status is 2 if anything was not found.
pub fn run(
    fresh: impl Fn() -> Result<Inspector, String>,
    files: &[OsString],
    opts: &TreeOptions,
    style: Style,
) -> Result<u8, String> {
    let mut trees = Vec::new();
    let mut status = 0;
    let mut text = String::new();
    let host = {
        let ins = fresh()?;
        ins.host().map(|h| ins.object(h).path())
    };
    for file in files {
        // Each file as the only one the host opens (nothing of one tree,
        // loaded or failed, in another).
        let mut ins = fresh()?;
        let ins = &mut ins;
        let root = match ins.open(file) {
            Ok(r) => r,
            Err(e) => {
                status = 2;
                if opts.json {
                    trees.push(json!({
                        "name": file.to_string_lossy(),
                        "found": false,
                        "error": e.to_string(),
                        "tried": tried_of(&e),
                    }));
                } else {
                    text.push_str(&format!(
                        "{} {}\n",
                        file.to_string_lossy(),
                        style.red(&failure_label(&e))
                    ));
                    for d in crate::host::open_error_details(&e, std::path::Path::new(file)) {
                        text.push_str(&format!("    {}\n", style.dim(&d)));
                    }
                }
                continue;
            }
        };
        if has_miss(ins, root) {
            status = 2;
        }
        if opts.json {
            let mut expanded = HashSet::new();
            trees.push(node_json(
                ins,
                root,
                file.to_string_lossy().as_ref(),
                &mut expanded,
            ));
        } else {
            let o = ins.object(root);
            let shown = if opts.paths {
                o.path()
            } else {
                file.to_string_lossy().into_owned()
            };
            text.push_str(&format!(
                "{} {}\n",
                style.bold(&shown),
                style.cyan(&format!("[{}]", o.reason().tag()))
            ));
            let mut seen = HashSet::new();
            seen.insert(root);
            render(ins, root, "", opts, style, &mut seen, &mut text);
        }
    }
    if opts.json {
        let doc = json!({
            "schema": "dynload-tree/1",
            "host": host,
            "trees": trees,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    } else {
        print!("{text}");
    }
    Ok(status)
}

/// "not found: ..." for a miss, "error: ..." for a file that could not be
/// used.
fn failure_label(e: &dynload::Error) -> String {
    match e {
        dynload::Error::NotFound { .. } => format!("not found: {e}"),
        _ => format!("error: {e}"),
    }
}

fn tried_of(e: &dynload::Error) -> Vec<String> {
    match e {
        dynload::Error::NotFound { tried, .. } => tried.clone(),
        _ => Vec::new(),
    }
}

fn has_miss(ins: &Inspector, root: ObjectId) -> bool {
    ins.search_list(root).iter().any(|&id| {
        ins.object(id)
            .dependencies()
            .iter()
            .any(|d| d.target.is_err())
    })
}

/// Is `dep` of `parent` the edge that loaded its target (as opposed to a
/// later mention of an object already loaded)?
fn primary(ins: &Inspector, parent: ObjectId, dep: &Dependency) -> bool {
    match &dep.target {
        Ok((t, reason)) => {
            *reason != Reason::AlreadyLoaded
                && ins.object(*t).loader() == Some(parent)
                && !ins.object(*t).is_host()
        }
        Err(_) => false,
    }
}

fn render(
    ins: &Inspector,
    id: ObjectId,
    prefix: &str,
    opts: &TreeOptions,
    style: Style,
    seen: &mut HashSet<ObjectId>,
    out: &mut String,
) {
    let deps = ins.object(id).dependencies();
    // Which entries are shown: misses always; the edge that loaded an
    // object; the first mention of an object the host (or glibc) provides;
    // everything with --all.
    let visible: Vec<(&Dependency, bool)> = deps
        .iter()
        .filter_map(|d| {
            let is_primary = primary(ins, id, d);
            let show = match &d.target {
                Err(_) => true,
                Ok((t, reason)) => {
                    opts.all
                        || is_primary
                        || ((ins.object(*t).is_host() || *reason == Reason::CRuntime)
                            && !seen.contains(t))
                }
            };
            if let Ok((t, _)) = &d.target {
                if show {
                    seen.insert(*t);
                }
            }
            show.then_some((d, is_primary))
        })
        .collect();
    for (i, (dep, is_primary)) in visible.iter().enumerate() {
        let last = i + 1 == visible.len();
        let (branch, cont) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        match &dep.target {
            Err(miss) => {
                out.push_str(&format!(
                    "{prefix}{branch}{} {}\n",
                    style.bold(&dep.name),
                    style.red(&failure_label(&miss.error))
                ));
                let mut first = true;
                let tried = if opts.all {
                    miss.tried.clone()
                } else {
                    dynload::inspect::fold_tried(&miss.tried)
                };
                for t in &tried {
                    let lead = if first { "tried " } else { "      " };
                    first = false;
                    out.push_str(&format!(
                        "{prefix}{cont}{}\n",
                        style.dim(&format!("{lead}{t}"))
                    ));
                }
            }
            Ok((t, reason)) => {
                let o = ins.object(*t);
                let name = if opts.paths {
                    o.path()
                } else {
                    dep.name.clone()
                };
                let tag = style.cyan(&format!("[{}]", reason.tag()));
                let name = if *is_primary { style.bold(&name) } else { name };
                out.push_str(&format!("{prefix}{branch}{name} {tag}\n"));
                let expand = *is_primary && (opts.all || *reason != Reason::CRuntime);
                if expand {
                    render(ins, *t, &format!("{prefix}{cont}"), opts, style, seen, out);
                }
            }
        }
    }
}

/// One object as JSON: every DT_NEEDED entry, children only under the
/// entry that loaded the object (or, for the host's objects, under their
/// first mention).
fn node_json(ins: &Inspector, id: ObjectId, name: &str, expanded: &mut HashSet<ObjectId>) -> Value {
    let o = ins.object(id);
    let mut v = object_json(ins, id, name, o.reason());
    expanded.insert(id);
    let deps: Vec<Value> = o
        .dependencies()
        .iter()
        .map(|d| match &d.target {
            Err(miss) => json!({
                "name": d.name,
                "found": false,
                "error": miss.error.to_string(),
                "tried": miss.tried,
            }),
            Ok((t, reason)) => {
                // Objects the host already has are expanded at their first
                // mention, so that the document lists every object.
                let host_first = ins.object(*t).is_host() && !expanded.contains(t);
                if (primary(ins, id, d) || host_first) && !expanded.contains(t) {
                    node_json(ins, *t, &d.name, expanded)
                } else {
                    let mut leaf = object_json(ins, *t, &d.name, reason);
                    leaf["repeated"] = json!(true);
                    leaf["dependencies"] = json!([]);
                    leaf
                }
            }
        })
        .collect();
    v["dependencies"] = Value::Array(deps);
    v
}

fn object_json(ins: &Inspector, id: ObjectId, name: &str, reason: &Reason) -> Value {
    let o = ins.object(id);
    let mut v = json!({
        "name": name,
        "found": true,
        "path": o.path(),
        "soname": o.soname(),
        "reason": reason.code(),
        "reason_text": reason.tag(),
        "host": o.is_host(),
        "repeated": false,
    });
    if let Reason::Rpath { of, .. } = reason {
        v["rpath_of"] = json!(of);
    }
    v
}
