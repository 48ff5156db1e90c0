//! `egret passes`: list the registered passes, or calibrate the cost model.

use super::table;
use anyhow::{anyhow, Result};
use egret_passes::pass::{Registry, DEFAULT_PIPELINE};

/// Run `egret passes`.
pub fn main(calibrate: bool, json: bool) -> Result<()> {
    if calibrate {
        let m = egret_passes::extract::calibrate().map_err(|e| anyhow!(e))?;
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    let reg = Registry::builtin();
    let rows: Vec<Vec<String>> = reg
        .passes()
        .iter()
        .map(|p| vec![p.name().to_string(), p.doc().to_string()])
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"name": r[0], "doc": r[1]}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&["pass", "description"], &rows));
        println!("  default pipeline: {}", DEFAULT_PIPELINE.join(","));
    }
    Ok(())
}
