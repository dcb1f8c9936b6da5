//! `dynload why SYMBOL`: which object a symbol binds to, and what every
//! object searched before and after it has of it.

use std::ffi::OsString;

use dynload::inspect::Inspector;
use serde_json::json;

use crate::style::Style;

pub struct WhyOptions {
    pub symbol: String,
    pub within: Option<OsString>,
    pub version: Option<String>,
    pub deepbind: bool,
    pub json: bool,
}

/// Exit status: 0 when the symbol binds, 2 when nothing defines it.
pub fn run(ins: &mut Inspector, opts: &WhyOptions, style: Style) -> Result<u8, String> {
    let from = match &opts.within {
        Some(f) => Some(ins.open(f).map_err(|e| {
            let mut text = e.to_string();
            for d in crate::host::open_error_details(&e, std::path::Path::new(f)) {
                text.push_str("\n  ");
                text.push_str(&d);
            }
            text
        })?),
        None => None,
    };
    let why = ins.why(&opts.symbol, opts.version.as_deref(), from, opts.deepbind);
    if opts.json {
        let doc = json!({
            "schema": "dynload-why/1",
            "symbol": why.symbol,
            "version": why.version,
            "from": why.from,
            "binds_to": why.binds_to.as_ref().map(|(o, e)| json!({"object": o, "entry": e})),
            "scopes": why.scopes.iter().map(|s| json!({
                "name": s.name,
                "objects": s.candidates.iter().map(|c| json!({
                    "object": c.object,
                    "status": c.status,
                    "detail": c.detail,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    } else {
        let version = why
            .version
            .as_deref()
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default();
        println!(
            "{}{version}, looked up from {}",
            style.bold(&why.symbol),
            why.from
        );
        match &why.binds_to {
            Some((o, e)) => println!("binds to {} in {}", style.green(e), style.bold(o)),
            None => println!(
                "{}",
                style.red("no object in scope defines it: undefined symbol")
            ),
        }
        let width = why
            .scopes
            .iter()
            .flat_map(|s| s.candidates.iter())
            .map(|c| c.status.len())
            .max()
            .unwrap_or(0);
        for s in &why.scopes {
            println!("\n{}:", style.bold(&s.name));
            for c in &s.candidates {
                let status = format!("{:<width$}", c.status);
                let status = match c.status {
                    "binds" => style.green(&status),
                    "absent" => style.dim(&status),
                    "shadowed" => style.yellow(&status),
                    _ => style.cyan(&status),
                };
                let detail = if c.detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", c.detail)
                };
                println!("  {status}  {}{detail}", c.object);
            }
        }
    }
    Ok(if why.binds_to.is_some() { 0 } else { 2 })
}
