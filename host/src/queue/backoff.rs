//! Retry delays: exponential with full jitter, as AWS's backoff study recommends, so that
//! tasks failing together do not retry together.

use std::time::Duration;

/// The delay before retry number `retry` (1 for the first retry): a random value in
/// `[base·2^(retry-1) / 2, base·2^(retry-1)]`, capped at `max`.
pub fn retry_delay(retry: u32, base: Duration, max: Duration) -> Duration {
    let exponent = retry.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let half = ceiling / 2;
    let jitter = Duration::from_nanos(fastrand::u64(0..=(ceiling - half).as_nanos() as u64));
    half + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..200 {
            let cases = [
                (1, 50, 100),
                (2, 100, 200),
                (3, 200, 400),
                (4, 400, 800),
                (5, 500, 1000),
                (40, 500, 1000),
            ];
            for (retry, low, high) in cases {
                let d = retry_delay(retry, base, max).as_millis();
                assert!(
                    (low..=high).contains(&d),
                    "retry {retry}: {d} ms not in {low}..={high}"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: std::collections::HashSet<_> = (0..50)
            .map(|_| retry_delay(3, Duration::from_secs(1), Duration::from_secs(60)))
            .collect();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
    }
}
