//! When and how long to wait before trying a registry request again: 408, 429, 5xx
//! and broken connections are retried with capped exponential backoff and full
//! jitter, honouring the registry's `Retry-After` (also capped); nothing else is.

use std::time::{Duration, SystemTime};

use reqwest::{Response, StatusCode, header};

/// How persistent one request is.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// The first backoff; it doubles per try.
    pub base: Duration,
    /// The longest backoff.
    pub cap: Duration,
    /// The longest `Retry-After` ferry honours; a longer one is cut to this.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The pause before try number `attempt + 1` (`attempt` counts from 1),
    /// or `None` when the tries are used up.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        if let Some(wait) = retry_after {
            return Some(wait.min(self.retry_after_cap));
        }
        let ceiling = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        // Full jitter spreads the retries of many parallel requests.
        Some(
            ceiling
                .mul_f64(fastrand::f64())
                .max(Duration::from_millis(10)),
        )
    }
}

/// Whether a status means "try again later".
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value.trim()).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_ends() {
        let policy = RetryPolicy::default();
        for attempt in 1..policy.attempts {
            let delay = policy.delay(attempt, None).unwrap();
            assert!(delay <= policy.cap, "{delay:?}");
        }
        assert_eq!(policy.delay(policy.attempts, None), None);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            Some(policy.retry_after_cap)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn only_throttling_and_server_errors_retry() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404, 405, 416] {
            assert!(!retryable_status(StatusCode::from_u16(code).unwrap()));
        }
    }
}
