//! `polyattn reproduce`: the Song–Xu–Yin expressivity experiment, as a report.

use super::{CliError, ReproduceArgs};
use poly_reproduce::{Grid, report::write_report, run};
use std::time::Instant;

pub fn run_reproduce(args: &ReproduceArgs) -> Result<(), CliError> {
    if args.train {
        return run_training(args);
    }
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

/// `--train`: the learning curves of `poly_reproduce::training`.
fn run_training(args: &ReproduceArgs) -> Result<(), CliError> {
    use poly_reproduce::training::{TrainPlan, curves_csv, curves_markdown, train};
    let start = Instant::now();
    let plan = TrainPlan::default_study();
    let curves = train(&plan)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::Output(format!("{}: {e}", args.out.display())))?;
    let md = curves_markdown(&curves, &plan);
    for (name, text) in [
        ("training.csv", curves_csv(&curves)),
        ("training.md", md.clone()),
    ] {
        let path = args.out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| CliError::Output(format!("{}: {e}", path.display())))?;
    }
    poly_reproduce::plots::training_plot(&curves, &args.out.join("training_accuracy.svg"))
        .map_err(CliError::Output)?;
    println!("{md}");
    println!(
        "wrote {}/training.{{csv,md}} and training_accuracy.svg in {:.1} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
