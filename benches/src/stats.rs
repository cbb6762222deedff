//! Medians, spreads and the shifted geometric mean ClickBench uses for ratios.

use std::time::Duration;

/// Repeated timings of one thing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    /// Milliseconds, in the order measured.
    pub ms: Vec<f64>,
}

impl Timings {
    pub fn push(&mut self, elapsed: Duration) {
        self.ms.push(elapsed.as_secs_f64() * 1000.0);
    }

    pub fn median(&self) -> Option<f64> {
        percentile(&self.ms, 0.5)
    }

    pub fn min(&self) -> Option<f64> {
        self.ms.iter().copied().reduce(f64::min)
    }

    pub fn max(&self) -> Option<f64> {
        self.ms.iter().copied().reduce(f64::max)
    }

    /// (max - min) / median: how far apart the runs were.
    pub fn spread(&self) -> Option<f64> {
        let median = self.median()?;
        let (max, min) = (self.max()?, self.min()?);
        (median > 0.0).then(|| (max - min) / median)
    }
}

/// The `q`-quantile (0..=1) by nearest rank of the sorted values; the median averages the
/// two middle values of an even count.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if (q - 0.5).abs() < f64::EPSILON && sorted.len().is_multiple_of(2) {
        let upper = sorted.len() / 2;
        return Some((sorted[upper - 1] + sorted[upper]) / 2.0);
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// ClickBench's shifted ratio: 10 ms added to both sides, so that queries of a few
/// milliseconds do not dominate a geometric mean with noise.
pub fn shifted_ratio(ms: f64, base_ms: f64) -> f64 {
    (ms + 10.0) / (base_ms + 10.0)
}

/// Geometric mean of `ratios` (`None` when empty).
pub fn geomean(ratios: &[f64]) -> Option<f64> {
    if ratios.is_empty() {
        return None;
    }
    let log_sum: f64 = ratios.iter().map(|r| r.ln()).sum();
    Some((log_sum / ratios.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[4.0, 1.0, 2.0, 3.0], 0.5), Some(2.5));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn shifted_geomean() {
        assert_eq!(shifted_ratio(0.0, 0.0), 1.0);
        assert!((shifted_ratio(90.0, 40.0) - 2.0).abs() < 1e-12);
        let g = geomean(&[2.0, 0.5]).unwrap_or_default();
        assert!((g - 1.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
    }
}
