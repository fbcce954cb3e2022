//! Reads criterion's saved estimates back, so a bench can report ratios measured in one run.

use std::path::{Path, PathBuf};

/// `target/criterion`, found from the bench executable's location (`target/<profile>/deps/…`).
pub fn criterion_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CRITERION_HOME") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Median time in seconds of benchmark `group/id` from its latest run, if criterion saved one.
pub fn median_seconds(dir: &Path, group: &str, id: &str) -> Option<f64> {
    let path = dir.join(group).join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"]
        .as_f64()
        .map(|ns| ns * 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_median_point_estimate() {
        let dir = std::env::temp_dir().join(format!("polyattn-criterion-{}", std::process::id()));
        let new = dir.join("g").join("f").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median":{"point_estimate":2500000.0}}"#,
        )
        .unwrap();
        assert_eq!(median_seconds(&dir, "g", "f"), Some(0.0025));
        assert_eq!(median_seconds(&dir, "g", "missing"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
