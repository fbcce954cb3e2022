//! Decoding with the exact KV cache: one new token's attention over a long context, split-K over
//! the cached keys, against the tiled engine called with n_q = 1 (which re-scans K and V for
//! non-finite values on every call and runs one query tile per head), on 1 and 2 threads.
//!
//! `cargo run --release --example decode`

use poly_bench::timing::time_runs;
use polyattn::core::KvCache;
use polyattn::data::synthetic::uniform;
use polyattn::{AttentionConfig, Mask, Threads, attention};
use std::num::NonZeroUsize;

const HEADS: usize = 8;
const CONTEXT: usize = 32768;
const D: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let k = uniform::<f32>([1, HEADS, CONTEXT, D], -1.0, 1.0, 1)?;
    let v = uniform::<f32>([1, HEADS, CONTEXT, D], -1.0, 1.0, 2)?;
    let q = uniform::<f32>([1, HEADS, 1, D], -1.0, 1.0, 3)?;
    println!("decoding one token: {HEADS} heads, context {CONTEXT}, d = {D}, f32, β = 4, causal");
    for threads in [1, 2] {
        let pool = Threads::Exact(NonZeroUsize::new(threads).expect("≥ 1"));
        let cfg = AttentionConfig::polynomial(4)
            .with_mask(Mask::Causal)
            .with_threads(pool);
        let mut cache = KvCache::new(&cfg, HEADS, D, D)?;
        cache.reserve(CONTEXT)?;
        cache.append(k.as_slice(), v.as_slice())?;
        let cached = time_runs(20, || cache.attend(q.as_slice(), HEADS).map(drop))?;
        let engine = time_runs(20, || {
            attention(q.view(), k.view(), v.view(), &cfg).map(drop)
        })?;
        println!(
            "{threads} thread(s): KV cache {:.1} µs per head, engine with n_q = 1 {:.1} µs per head \
             ({:.2}× faster)",
            1e6 * cached.median / HEADS as f64,
            1e6 * engine.median / HEADS as f64,
            engine.median / cached.median
        );
    }
    Ok(())
}
