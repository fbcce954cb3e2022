//! Metrics of one grid cell (docs/math.md §5.4), from the readouts `T` of the two classes.

/// Accuracy of `1[T > τ]`.
pub fn fixed_threshold_accuracy(t0: &[f64], t1: &[f64], tau: f64) -> f64 {
    let correct =
        t0.iter().filter(|&&t| t <= tau).count() + t1.iter().filter(|&&t| t > tau).count();
    correct as f64 / (t0.len() + t1.len()) as f64
}

/// The threshold maximizing training accuracy of `1[T > τ]` (midpoints between sorted values).
pub fn best_threshold(t0: &[f64], t1: &[f64]) -> f64 {
    let mut all: Vec<(f64, bool)> = t0
        .iter()
        .map(|&t| (t, false))
        .chain(t1.iter().map(|&t| (t, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // τ below everything: all predicted D1.
    let mut correct = t1.len() as i64;
    let (mut best, mut best_tau) = (correct, all.first().map_or(0.0, |x| x.0) - 1.0);
    for (i, &(t, is_d1)) in all.iter().enumerate() {
        // Moving τ above t flips this sample to "D0".
        correct += if is_d1 { -1 } else { 1 };
        let next = all.get(i + 1).map(|x| x.0);
        if next == Some(t) {
            continue; // ties must move together
        }
        if correct > best {
            best = correct;
            best_tau = next.map_or(t + 1.0, |n| 0.5 * (t + n));
        }
    }
    best_tau
}

/// Best-threshold accuracy: τ fitted on the first half of each class, accuracy on the second half.
pub fn best_threshold_accuracy(t0: &[f64], t1: &[f64]) -> f64 {
    let (train0, test0) = t0.split_at(t0.len() / 2);
    let (train1, test1) = t1.split_at(t1.len() / 2);
    fixed_threshold_accuracy(test0, test1, best_threshold(train0, train1))
}

/// ROC-AUC: `P(T1 > T0) + ½·P(T1 = T0)` over all pairs (Mann–Whitney, by sorting).
pub fn roc_auc(t0: &[f64], t1: &[f64]) -> f64 {
    let mut sorted0 = t0.to_vec();
    sorted0.sort_by(f64::total_cmp);
    let mut wins = 0.0;
    for &t in t1 {
        let below = sorted0.partition_point(|&x| x < t);
        let not_above = sorted0.partition_point(|&x| x <= t);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    wins / (t0.len() as f64 * t1.len() as f64)
}

/// `(min T1 − max T0)/√(n·d)`: positive when the classes separate perfectly.
pub fn standardized_margin(t0: &[f64], t1: &[f64], n: usize, d: usize) -> f64 {
    let min1 = t1.iter().cloned().fold(f64::INFINITY, f64::min);
    let max0 = t0.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (min1 - max0) / ((n * d) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separated_classes() {
        let t0 = [1.0, 2.0, 3.0, 0.5];
        let t1 = [5.0, 6.0, 7.0, 4.5];
        assert_eq!(roc_auc(&t0, &t1), 1.0);
        assert_eq!(best_threshold_accuracy(&t0, &t1), 1.0);
        assert_eq!(fixed_threshold_accuracy(&t0, &t1, 4.0), 1.0);
        assert_eq!(fixed_threshold_accuracy(&t0, &t1, 10.0), 0.5);
        assert_eq!(standardized_margin(&t0, &t1, 1, 4), (4.5 - 3.0) / 2.0);
        let tau = best_threshold(&t0, &t1);
        assert!(tau > 3.0 && tau < 4.5);
    }

    #[test]
    fn identical_classes_are_at_chance() {
        let t: Vec<f64> = (0..100).map(|i| ((i * 37) % 100) as f64).collect();
        assert_eq!(roc_auc(&t, &t), 0.5);
        assert!((best_threshold_accuracy(&t, &t) - 0.5).abs() <= 0.1);
        let ties = [1.0; 10];
        assert_eq!(roc_auc(&ties, &ties), 0.5);
    }

    #[test]
    fn reversed_classes_have_auc_zero() {
        assert_eq!(roc_auc(&[5.0, 6.0], &[1.0, 2.0]), 0.0);
    }
}
