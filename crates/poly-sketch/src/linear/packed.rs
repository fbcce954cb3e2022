//! Linear attention over packed variable-length sequences: each sequence is its own problem, so
//! the state starts from zero at every sequence boundary and no key crosses into another sequence.

use super::{LinearAttentionConfig, linear_attention};
use crate::SketchElement;
use crate::feature_map::FeatureMap;
use poly_core::{
    AttentionConfig, Result, Sequences, Tensor, TensorRef, check_elements, check_inputs,
};

/// [`linear_attention`] over packed sequences (see [`poly_core::attention_packed`]): the sequence
/// axis of q, k and v holds the sequences one after another, and each query sees only keys of its
/// own sequence — the block-causal state restarts at each sequence. Each sequence's rows are
/// copied once into a buffer of their own and computed as one problem (all heads in parallel).
///
/// # Errors
/// As [`linear_attention`], plus sequence lengths that do not fill the sequence axis.
pub fn linear_attention_packed<T: SketchElement>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    sequences: &Sequences,
) -> Result<Tensor<T>> {
    let dims = check_inputs(&q, &k, &v, &AttentionConfig::polynomial(1))?;
    sequences.check(&dims)?;
    check_elements("attention output", &dims.output_shape(), size_of::<T>())?;
    let mut out = Tensor::zeros(dims.output_shape())?;
    let (n, d_v) = (dims.n_q, dims.d_v);
    let mut start = 0;
    while start < n {
        let rows = sequences.containing(start);
        let (qs, ks, vs) = (
            q.rows(rows.clone())?,
            k.rows(rows.clone())?,
            v.rows(rows.clone())?,
        );
        let piece = linear_attention(qs.view(), ks.view(), vs.view(), map, cfg).map_err(|e| {
            e.moved(|mut at| {
                at.row += rows.start;
                at
            })
        })?;
        let len = rows.len();
        for (dst, src) in out
            .as_mut_slice()
            .chunks_exact_mut(n * d_v)
            .zip(piece.as_slice().chunks_exact(len * d_v))
        {
            dst[rows.start * d_v..rows.end * d_v].copy_from_slice(src);
        }
        start = rows.end;
    }
    Ok(out)
}
