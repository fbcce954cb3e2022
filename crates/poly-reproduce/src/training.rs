//! Beyond the paper: *learning* the layer. The Song–Xu–Yin network scores `A1 X A2ᵀ`; here `X`
//! (with a logistic readout `z = w · T/(n·d) + c`) is trained by Adam on the R-self datasets,
//! through poly-core's exact backward, for several degrees β, a softmax twin and a linear twin
//! (β = 1 without normalization: plain linear attention), all from the same start `X = I`,
//! `w = 1`, `c = 0`. The question is whether a high degree learns to separate D0 from D1 faster,
//! as the expressivity result suggests; the curves answer it either way.

use poly_core::primitives::{gemm_ab, gemm_add_atb};
use poly_core::{
    AttentionConfig, Error, Normalization, Tensor, attention_backward, attention_forward,
};
use poly_data::datasets::{Class, SelfDataset, sample_seed};
use std::fmt::Write as _;

/// One trained model's kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrainKernel {
    /// `(score)^β` with `Sum` normalization (β even, so weights cannot cancel).
    Polynomial(u32),
    /// `softmax(score)`.
    Softmax,
    /// `score` with no normalization.
    Linear,
}

impl TrainKernel {
    /// `poly4`, `softmax`, `linear`.
    pub fn label(&self) -> String {
        match self {
            TrainKernel::Polynomial(b) => format!("poly{b}"),
            TrainKernel::Softmax => "softmax".into(),
            TrainKernel::Linear => "linear".into(),
        }
    }

    fn config(&self) -> AttentionConfig {
        match self {
            TrainKernel::Polynomial(b) => AttentionConfig::polynomial(*b),
            TrainKernel::Softmax => AttentionConfig::softmax().with_scale(1.0),
            TrainKernel::Linear => {
                AttentionConfig::polynomial(1).with_normalization(Normalization::None)
            }
        }
    }
}

/// What to train and how.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPlan {
    /// Sequence length, feature dimension and planted value of R-self.
    pub n: usize,
    /// See `n`.
    pub d: usize,
    /// See `n`.
    pub b: f64,
    /// Training samples per class (full-batch steps).
    pub train_per_class: usize,
    /// Held-out samples per class.
    pub test_per_class: usize,
    /// Adam steps.
    pub steps: usize,
    /// Evaluate every this many steps (and at step 0).
    pub eval_every: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// The kernels to train.
    pub kernels: Vec<TrainKernel>,
}

impl TrainPlan {
    /// The default study: n = 32, d = 4, b = 6, 256 + 256 training samples, 200 steps, evaluated at
    /// every step.
    pub fn default_study() -> Self {
        TrainPlan {
            n: 32,
            d: 4,
            b: 6.0,
            train_per_class: 256,
            test_per_class: 256,
            steps: 200,
            eval_every: 1,
            learning_rate: 0.02,
            kernels: vec![
                TrainKernel::Linear,
                TrainKernel::Polynomial(2),
                TrainKernel::Polynomial(4),
                TrainKernel::Polynomial(8),
                TrainKernel::Polynomial(16),
                TrainKernel::Softmax,
            ],
        }
    }
}

/// One kernel's learning curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The kernel.
    pub kernel: TrainKernel,
    /// Steps at which it was evaluated.
    pub steps: Vec<usize>,
    /// Held-out accuracy of `z > 0` at those steps.
    pub test_accuracy: Vec<f64>,
    /// Training loss (mean binary cross-entropy) at those steps.
    pub train_loss: Vec<f64>,
}

/// A set of samples of both classes as one batch: `A` (`[count, 1, n, d]`, used as queries' input,
/// keys and values) and labels.
struct Batch {
    a: Tensor<f64>,
    labels: Vec<f64>,
}

fn batch(ds: &SelfDataset, per_class: usize, offset: u64) -> Result<Batch, Error> {
    let mut data = Vec::with_capacity(2 * per_class * ds.n * ds.d);
    let mut labels = Vec::new();
    for class in [Class::D0, Class::D1] {
        for i in 0..per_class as u64 {
            let s = ds.sample(class, sample_seed(7, class, offset + i));
            data.extend_from_slice(&s.a1);
            labels.push(if class == Class::D1 { 1.0 } else { 0.0 });
        }
    }
    Ok(Batch {
        a: Tensor::from_vec([2 * per_class, 1, ds.n, ds.d], data)?,
        labels,
    })
}

/// The model's parameters: X (`d × d`, row-major), w and c.
#[derive(Clone)]
struct Params {
    x: Vec<f64>,
    w: f64,
    c: f64,
}

/// The logits and loss over a batch, and (`with_gradient`) the loss's gradient.
fn evaluate(
    p: &Params,
    data: &Batch,
    kernel: TrainKernel,
    d: usize,
    with_gradient: bool,
) -> Result<(Vec<f64>, f64, Option<Params>), Error> {
    let [count, _, n, _] = data.a.shape();
    // q = A X over all rows of all samples.
    let a = data.a.as_slice();
    let mut q = vec![0.0; a.len()];
    gemm_ab(&mut q, a, &p.x, a.len() / d, d, d);
    let q = Tensor::from_vec([count, 1, n, d], q)?;
    let norm = (n * d) as f64;
    let forward = attention_forward(q.view(), data.a.view(), data.a.view(), &kernel.config())?;
    let c = forward.output();
    let t: Vec<f64> = c
        .as_slice()
        .chunks_exact(n * d)
        .map(|s| s.iter().sum::<f64>() / norm)
        .collect();
    let logits: Vec<f64> = t.iter().map(|t| p.w * t + p.c).collect();
    let mut loss = 0.0;
    let mut dz = vec![0.0; count];
    for ((&z, &y), dz) in logits.iter().zip(&data.labels).zip(&mut dz) {
        // Binary cross-entropy with logits, stably.
        loss += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
        *dz = (1.0 / (1.0 + (-z).exp()) - y) / count as f64;
    }
    loss /= count as f64;
    if !with_gradient {
        return Ok((logits, loss, None));
    }
    // The loss is linear in C: its gradient is dL/dz · w/(n·d) at every entry.
    let grad_out: Vec<f64> = dz
        .iter()
        .flat_map(|&g| std::iter::repeat_n(g * p.w / norm, n * d))
        .collect();
    let grad_out = Tensor::from_vec([count, 1, n, d], grad_out)?;
    let grads = attention_backward(
        q.view(),
        data.a.view(),
        data.a.view(),
        &forward,
        grad_out.view(),
    )?;
    // dX = Σ_s A_sᵀ dq_s.
    let mut dx = vec![0.0; d * d];
    gemm_add_atb(&mut dx, a, grads.dq.as_slice(), d, d, a.len() / d);
    let gradient = Params {
        x: dx,
        w: dz.iter().zip(&t).map(|(g, t)| g * t).sum(),
        c: dz.iter().sum(),
    };
    Ok((logits, loss, Some(gradient)))
}

fn accuracy(logits: &[f64], labels: &[f64]) -> f64 {
    let right = logits
        .iter()
        .zip(labels)
        .filter(|(z, y)| (**z > 0.0) == (**y > 0.5))
        .count();
    right as f64 / labels.len() as f64
}

/// Adam's moment estimates for every parameter, flattened `[X…, w, c]`.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    fn step(&mut self, p: &mut Params, g: &Params, lr: f64) {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        self.t += 1;
        let grads = g.x.iter().copied().chain([g.w, g.c]);
        let mut update = Vec::with_capacity(self.m.len());
        for ((m, v), g) in self.m.iter_mut().zip(&mut self.v).zip(grads) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let (mh, vh) = (*m / (1.0 - b1.powi(self.t)), *v / (1.0 - b2.powi(self.t)));
            update.push(lr * mh / (vh.sqrt() + eps));
        }
        let (x_update, rest) = update.split_at(p.x.len());
        p.x.iter_mut().zip(x_update).for_each(|(x, u)| *x -= u);
        p.w -= rest[0];
        p.c -= rest[1];
    }
}

/// Trains every kernel of the plan and returns their curves.
///
/// # Errors
/// No samples of a class, `eval_every = 0`, a dataset the generator refuses; the engine's errors
/// (none are expected: even degrees, softmax and unnormalized β = 1 cannot produce an
/// ill-conditioned normalizer).
pub fn train(plan: &TrainPlan) -> Result<Vec<Curve>, Error> {
    for (name, value) in [
        ("train_per_class", plan.train_per_class),
        ("test_per_class", plan.test_per_class),
        ("eval_every", plan.eval_every),
    ] {
        if value == 0 {
            return Err(Error::InvalidParameter {
                name,
                value: "0".into(),
                expected: "at least 1 (a loss over no samples is 0/0)",
            });
        }
    }
    let ds = SelfDataset::new(plan.n, plan.d, plan.b).map_err(|e| Error::InvalidParameter {
        name: "training dataset",
        value: e.to_string(),
        expected: "n ≥ 2, d ≥ 1, b > 1",
    })?;
    let (train_set, test_set) = (
        batch(&ds, plan.train_per_class, 0)?,
        batch(&ds, plan.test_per_class, 1 << 32)?,
    );
    let d = plan.d;
    let mut curves = Vec::new();
    for &kernel in &plan.kernels {
        let mut p = Params {
            x: (0..d * d)
                .map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 })
                .collect(),
            w: 1.0,
            c: 0.0,
        };
        let mut adam = Adam {
            m: vec![0.0; d * d + 2],
            v: vec![0.0; d * d + 2],
            t: 0,
        };
        let mut curve = Curve {
            kernel,
            steps: Vec::new(),
            test_accuracy: Vec::new(),
            train_loss: Vec::new(),
        };
        for step in 0..=plan.steps {
            let (_, loss, gradient) = evaluate(&p, &train_set, kernel, d, true)?;
            if step % plan.eval_every == 0 || step == plan.steps {
                let (logits, _, _) = evaluate(&p, &test_set, kernel, d, false)?;
                curve.steps.push(step);
                curve
                    .test_accuracy
                    .push(accuracy(&logits, &test_set.labels));
                curve.train_loss.push(loss);
            }
            if step < plan.steps {
                let gradient = gradient.expect("asked for");
                adam.step(&mut p, &gradient, plan.learning_rate);
            }
        }
        curves.push(curve);
    }
    Ok(curves)
}

/// The curves as CSV: `kernel,step,test_accuracy,train_loss`.
pub fn curves_csv(curves: &[Curve]) -> String {
    let mut csv = String::from("kernel,step,test_accuracy,train_loss\n");
    for c in curves {
        for ((s, a), l) in c.steps.iter().zip(&c.test_accuracy).zip(&c.train_loss) {
            let _ = writeln!(csv, "{},{s},{a:.4},{l:.6}", c.kernel.label());
        }
    }
    csv
}

/// A markdown summary: accuracy at the start, at a quarter, half and the end, the first steps
/// each kernel reaches 90% and 95% held-out accuracy, and the final training loss.
pub fn curves_markdown(curves: &[Curve], plan: &TrainPlan) -> String {
    let mut md = format!(
        "# Training X by gradient descent (R-self, n = {}, d = {}, b = {})\n\n{} + {} training \
         samples, {} + {} held out; Adam, learning rate {}, from X = I, w = 1, c = 0; full-batch \
         gradients through poly-core's exact backward.\n\n| kernel | step 0 | step {} | step {} | \
         step {} | first step ≥ 90% | first step ≥ 95% | final train loss |\n|---|---|---|---|---|---|---|---|\n",
        plan.n,
        plan.d,
        plan.b,
        plan.train_per_class,
        plan.train_per_class,
        plan.test_per_class,
        plan.test_per_class,
        plan.learning_rate,
        plan.steps / 4,
        plan.steps / 2,
        plan.steps
    );
    for c in curves {
        let at = |step: usize| {
            c.steps
                .iter()
                .position(|&s| s >= step)
                .map_or("–".into(), |i| format!("{:.3}", c.test_accuracy[i]))
        };
        let first = |level: f64| {
            c.steps
                .iter()
                .zip(&c.test_accuracy)
                .find(|(_, a)| **a >= level)
                .map_or("never".into(), |(s, _)| s.to_string())
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} |",
            c.kernel.label(),
            at(0),
            at(plan.steps / 4),
            at(plan.steps / 2),
            at(plan.steps),
            first(0.9),
            first(0.95),
            c.train_loss.last().copied().unwrap_or(f64::NAN)
        );
    }
    md
}
