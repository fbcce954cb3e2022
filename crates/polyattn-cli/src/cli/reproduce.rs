//! `polyattn reproduce`: the Song–Xu–Yin expressivity experiment, as a report.

use super::{CliError, ReproduceArgs};
use poly_reproduce::{Grid, report::write_report, run};
use std::time::Instant;

pub fn run_reproduce(args: &ReproduceArgs) -> Result<(), CliError> {
    let grid = if args.quick {
        Grid::quick()
    } else {
        Grid::full()
    };
    let start = Instant::now();
    let reproduction = run(grid)?;
    let report = write_report(&reproduction, &args.out).map_err(CliError::Output)?;
    let headline = reproduction
        .closed_form
        .iter()
        .filter(|c| c.dataset.params() == (4096, 16, 16.0))
        .map(|c| format!("{} {:.2}", c.kernel.label(), c.best_threshold_accuracy))
        .collect::<Vec<_>>()
        .join(", ");
    println!("best-threshold accuracy at n = 4096, d = 16, b = 16: {headline}");
    println!(
        "wrote {} (and results.csv, SVG plots) in {:.1} s",
        report.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
