//! Throwaway probe (not committed): cells interleaved in one process with a GEMM each round.
use polyattn::core::{Kernel, Threads, attention_into};
use polyattn::{AttentionConfig, Mask};
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = a[0].parse().unwrap();
    struct Cell {
        name: String,
        q: polyattn::core::Tensor<f32>,
        k: polyattn::core::Tensor<f32>,
        v: polyattn::core::Tensor<f32>,
        cfg: AttentionConfig,
        out: Vec<f32>,
        flops: f64,
        t: Vec<f64>,
        threads: usize,
    }
    let mut cells: Vec<Cell> = a[1..]
        .iter()
        .map(|spec| {
            let p: Vec<&str> = spec.split(':').collect();
            let kernel = if p[0] == "softmax" {
                Kernel::Softmax
            } else {
                Kernel::Polynomial { degree: 4 }
            };
            let n: usize = p[1].parse().unwrap();
            let causal = p[2] == "c";
            let threads: usize = p[3].parse().unwrap();
            let heads: usize = p.get(4).map_or(8, |h| h.parse().unwrap());
            let mk =
                |s| polyattn::data::synthetic::uniform([1, heads, n, 64], -1.0, 1.0, s).unwrap();
            let window: Option<usize> = p.get(5).map(|w| w.parse().unwrap()).filter(|&w| w > 0);
            let mut cfg = AttentionConfig::new(kernel)
                .with_mask(if causal { Mask::Causal } else { Mask::None })
                .with_threads(Threads::Exact(
                    std::num::NonZeroUsize::new(threads).unwrap(),
                ));
            if let Some(w) = window {
                cfg = cfg.with_window(w);
            }
            let pairs = match window {
                Some(w) => (n * w - w * (w - 1) / 2) as f64,
                None if causal => (n * (n + 1) / 2) as f64,
                None => (n * n) as f64,
            };
            Cell {
                name: spec.clone(),
                q: mk(1),
                k: mk(2),
                v: mk(3),
                cfg,
                out: vec![0.0; heads * n * 64],
                flops: heads as f64 * pairs * 256.0,
                t: vec![],
                threads,
            }
        })
        .collect();
    let gn = 2048;
    let ga = faer::Mat::<f32>::from_fn(gn, gn, |i, j| ((i * 7 + j * 3) % 17) as f32 * 0.05 - 0.4);
    let gb = faer::Mat::<f32>::from_fn(gn, gn, |i, j| ((i * 5 + j * 11) % 13) as f32 * 0.07 - 0.4);
    let mut gc = faer::Mat::<f32>::zeros(gn, gn);
    let mut g = [vec![], vec![]];
    for round in 0..rounds + 2 {
        for th in 1..=2 {
            let par = if th == 1 {
                faer::Par::Seq
            } else {
                faer::Par::rayon(2)
            };
            let s = Instant::now();
            faer::linalg::matmul::matmul(
                gc.as_mut(),
                faer::Accum::Replace,
                ga.as_ref(),
                gb.as_ref(),
                1.0,
                par,
            );
            if round >= 2 {
                g[th - 1].push(2.0 * (gn as f64).powi(3) / s.elapsed().as_secs_f64() / 1e9);
            }
        }
        for c in cells.iter_mut() {
            let s = Instant::now();
            attention_into(c.q.view(), c.k.view(), c.v.view(), &c.cfg, &mut c.out).unwrap();
            if round >= 2 {
                c.t.push(s.elapsed().as_secs_f64());
            }
        }
    }
    for gg in g.iter_mut() {
        gg.sort_by(f64::total_cmp);
    }
    println!(
        "gemm 1t med {:.0} max {:.0}; 2t med {:.0} max {:.0}",
        g[0][g[0].len() / 2],
        g[0][g[0].len() - 1],
        g[1][g[1].len() / 2],
        g[1][g[1].len() - 1]
    );
    for c in cells.iter_mut() {
        c.t.sort_by(f64::total_cmp);
        let gm = &g[c.threads - 1];
        let (med, min) = (c.t[c.t.len() / 2], c.t[0]);
        println!(
            "{:22} min {:8.2} med {:8.2} ms  med/med {:5.1}%  min/max {:5.1}%",
            c.name,
            min * 1e3,
            med * 1e3,
            100.0 * c.flops / med / 1e9 / gm[gm.len() / 2],
            100.0 * c.flops / min / 1e9 / gm[gm.len() - 1]
        );
    }
}
