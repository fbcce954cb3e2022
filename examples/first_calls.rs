//! How the first calls of a fresh process compare with the steady state: times calls 1–20 of exact
//! causal β = 4 attention (batch × heads = 8, d = 64, f32), returning a fresh output (`attention`)
//! and into one buffer touched beforehand (`attention_into`, what `polyattn attend --repeat`
//! does; measured first, in the fresh process), and prints calls 1–3 against the median of calls
//! 10–20 for each.
//!
//! With `--warm-up`, the process first calls `polyattn::core::warm_up`, as a server would at
//! start-up.
//!
//! `cargo run --release --example first_calls [n] [--warm-up]`

use polyattn::core::{Threads, attention_into, warm_up};
use polyattn::{AttentionConfig, Mask, Tensor, attention};
use std::time::Instant;

fn main() -> Result<(), polyattn::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(4096);
    if args.iter().any(|a| a == "--warm-up") {
        let start = Instant::now();
        warm_up(Threads::Global)?;
        println!("warm_up: {:.2} ms", start.elapsed().as_secs_f64() * 1e3);
    }
    let inputs: Vec<Tensor<f32>> = (1..=3)
        .map(|seed| polyattn::data::synthetic::uniform([1, 8, n, 64], -1.0, 1.0, seed))
        .collect::<Result<_, _>>()
        .expect("a small shape");
    let cfg = AttentionConfig::polynomial(4).with_mask(Mask::Causal);
    let mut buffer = vec![0.0f32; 8 * n * 64];
    buffer.fill(1.0); // touched: its pages exist before the first timed call
    for into in [true, false] {
        let mut seconds = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            if into {
                attention_into(
                    inputs[0].view(),
                    inputs[1].view(),
                    inputs[2].view(),
                    &cfg,
                    &mut buffer,
                )?;
            } else {
                let out = attention(inputs[0].view(), inputs[1].view(), inputs[2].view(), &cfg)?;
                std::hint::black_box(out);
            }
            seconds.push(start.elapsed().as_secs_f64());
        }
        let mut steady = seconds[9..].to_vec();
        steady.sort_by(f64::total_cmp);
        let median = steady[steady.len() / 2];
        println!(
            "n = {n}, {}: calls 1-3 at {:.2}x, {:.2}x, {:.2}x of the median of calls 10-20 ({:.1} ms)",
            if into { "attention_into" } else { "attention" },
            seconds[0] / median,
            seconds[1] / median,
            seconds[2] / median,
            median * 1e3
        );
    }
    Ok(())
}
