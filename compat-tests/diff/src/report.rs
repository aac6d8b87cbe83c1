//! Comparing whole recording directories and printing what differs: per cell, then each
//! distinct difference once with the cells that show it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::compare::{CellReport, Difference, Ignore, compare_cell, read_exchanges};

/// Every cell compared, by `family/scenario`.
#[derive(Debug, Default)]
pub struct Report {
    cells: BTreeMap<String, CellReport>,
    /// Cells recorded on one side only.
    missing: Vec<String>,
    unreadable_lines: usize,
}

/// Compares `LMQ_DIR/<family>/<scenario>.jsonl` with the same file under `kafka`.
pub fn compare_dirs(lmq: &Path, kafka: &Path, ignores: &[Ignore]) -> Result<Report> {
    let mut report = Report::default();
    for (family, scenario) in cells(lmq)? {
        let name = format!("{family}/{scenario}");
        let file = Path::new(&family).join(format!("{scenario}.jsonl"));
        let Ok(theirs) = std::fs::read_to_string(kafka.join(&file)) else {
            report.missing.push(name);
            continue;
        };
        let ours = std::fs::read_to_string(lmq.join(&file))
            .with_context(|| format!("reading {}", lmq.join(&file).display()))?;
        let (ours, bad_ours) = read_exchanges(&ours);
        let (theirs, bad_theirs) = read_exchanges(&theirs);
        report.unreadable_lines += bad_ours + bad_theirs;
        report
            .cells
            .insert(name, compare_cell(&scenario, &ours, &theirs, ignores));
    }
    Ok(report)
}

/// `(family, scenario)` of every recording under `dir`, sorted.
fn cells(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for family in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let family = family?;
        if !family.file_type()?.is_dir() {
            continue;
        }
        for recording in std::fs::read_dir(family.path())? {
            let path = recording?.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "jsonl")
            {
                if let Some(scenario) = path.file_stem().and_then(|stem| stem.to_str()) {
                    let family = family.file_name().to_string_lossy().into_owned();
                    out.push((family, scenario.to_string()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Report {
    /// Each distinct difference with the cells that show it.
    fn distinct(&self) -> BTreeMap<&Difference, Vec<&str>> {
        let mut out: BTreeMap<&Difference, Vec<&str>> = BTreeMap::new();
        for (cell, report) in &self.cells {
            for difference in &report.differences {
                out.entry(difference).or_default().push(cell);
            }
        }
        out
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cell                                       paired  differing  unmatched (lmq / kafka)"
        );
        for (cell, report) in &self.cells {
            let _ = writeln!(
                out,
                "{cell:<42} {:>6}  {:>9}  {} / {}",
                report.paired,
                report.differences.len(),
                counts(&report.only_lmq),
                counts(&report.only_kafka),
            );
        }
        for cell in &self.missing {
            let _ = writeln!(out, "{cell:<42} recorded against LMQ only");
        }
        let distinct = self.distinct();
        if !distinct.is_empty() {
            let _ = writeln!(
                out,
                "\ndistinct differences (API field: LMQ | Kafka, in N cells):"
            );
            for (difference, cells) in &distinct {
                let _ = writeln!(
                    out,
                    "  {} {}: {} | {}  ({} cells: {})",
                    difference.api,
                    difference.path,
                    shown(difference.lmq.as_deref()),
                    shown(difference.kafka.as_deref()),
                    cells.len(),
                    abbreviated(cells),
                );
            }
        }
        let paired: usize = self.cells.values().map(|report| report.paired).sum();
        let differing: usize = self
            .cells
            .values()
            .map(|report| report.differences.len())
            .sum();
        let unmatched: usize = self
            .cells
            .values()
            .map(|report| {
                report.only_lmq.values().sum::<usize>() + report.only_kafka.values().sum::<usize>()
            })
            .sum();
        let _ = writeln!(
            out,
            "\ndifferential: {} cells, {paired} exchanges paired, {differing} differences ({} distinct), {unmatched} exchanges unmatched, {} unreadable lines",
            self.cells.len(),
            distinct.len(),
            self.unreadable_lines,
        );
        out
    }

    pub fn json(&self) -> Value {
        let distinct: Vec<Value> = self
            .distinct()
            .into_iter()
            .map(|(difference, cells)| {
                json!({
                    "api": difference.api,
                    "path": difference.path,
                    "lmq": difference.lmq,
                    "kafka": difference.kafka,
                    "cells": cells,
                })
            })
            .collect();
        let cells: BTreeMap<&String, Value> = self
            .cells
            .iter()
            .map(|(cell, report)| {
                (
                    cell,
                    json!({
                        "paired": report.paired,
                        "differences": report.differences.len(),
                        "only_lmq": report.only_lmq,
                        "only_kafka": report.only_kafka,
                    }),
                )
            })
            .collect();
        json!({ "cells": cells, "missing": self.missing, "differences": distinct })
    }
}

fn counts(by_api: &BTreeMap<String, usize>) -> String {
    if by_api.is_empty() {
        return "-".to_string();
    }
    by_api
        .iter()
        .map(|(api, count)| format!("{api}×{count}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn shown(value: Option<&str>) -> String {
    match value {
        None => "(absent)".to_string(),
        Some(value) if value.chars().count() > 80 => {
            format!("{}…", value.chars().take(79).collect::<String>())
        }
        Some(value) => value.to_string(),
    }
}

fn abbreviated(cells: &[&str]) -> String {
    if cells.len() <= 3 {
        cells.join(", ")
    } else {
        format!("{}, … {} more", cells[..3].join(", "), cells.len() - 3)
    }
}
