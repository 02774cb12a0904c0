//! Per-tenant admission limits on importImage: how many imports one tenant may have
//! queued or running, and how many it may submit per sliding minute. The counts live
//! in Postgres (see `store::enqueue`), so the limits hold across replicas; this
//! module holds the limits and what a refusal tells the client.

use std::time::Duration;

/// The window `per_minute` counts submissions in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// `Retry-After` when the tenant has too many imports in flight: no one knows when
/// one will finish, and a running import takes seconds to minutes.
pub const ACTIVE_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How much one tenant may queue and submit; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Imports queued or running at once.
    pub max_active: u32,
    /// Submissions per sliding minute.
    pub per_minute: u32,
}

impl TenantLimits {
    /// The production defaults. 200 in flight keeps one tenant from filling the
    /// shared FIFO queue (a few workers per replica drain it) while leaving room for
    /// a release pipeline importing a large image set at once; 600 a minute is ARM's
    /// own write refill rate (10 a second), far above any interactive use.
    pub const DEFAULT: Self = Self {
        max_active: 200,
        per_minute: 600,
    };

    /// No limit at all.
    pub const UNLIMITED: Self = Self {
        max_active: 0,
        per_minute: 0,
    };

    /// Whether any limit is on (the check costs a per-tenant lock and two counts).
    pub fn any(self) -> bool {
        self.max_active > 0 || self.per_minute > 0
    }
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A submission refused because the tenant is over a limit; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// A client-safe sentence naming the limit.
    pub message: String,
    /// Whole seconds until a retry can succeed (at least 1).
    pub retry_after: u64,
}

impl Limited {
    /// Over the in-flight limit.
    pub fn active(limit: u32) -> Self {
        Self {
            message: format!(
                "The tenant already has {limit} imports queued or running, the most allowed at once. Retry after some of them finish."
            ),
            retry_after: ACTIVE_RETRY_AFTER.as_secs(),
        }
    }

    /// Over the per-minute limit; `oldest_age` is how long ago the oldest
    /// submission still in the window was made: once it leaves, one more fits.
    pub fn rate(limit: u32, oldest_age: Duration) -> Self {
        let left = WINDOW.saturating_sub(oldest_age);
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Self {
            message: format!(
                "The tenant submitted {limit} imports in the last minute, the most allowed. Retry after {} seconds.",
                seconds.max(1)
            ),
            retry_after: seconds.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_retry_after_is_when_the_oldest_leaves_the_window() {
        assert_eq!(Limited::rate(5, Duration::from_secs(0)).retry_after, 60);
        assert_eq!(
            Limited::rate(5, Duration::from_millis(59_001)).retry_after,
            1
        );
        assert_eq!(
            Limited::rate(5, Duration::from_millis(20_500)).retry_after,
            40
        );
        // Clock skew or a just-expired row never yields 0.
        assert_eq!(Limited::rate(5, Duration::from_secs(75)).retry_after, 1);
        assert_eq!(Limited::active(3).retry_after, 10);
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(!TenantLimits::UNLIMITED.any());
        assert!(TenantLimits::DEFAULT.any());
        assert!(
            TenantLimits {
                max_active: 0,
                per_minute: 1
            }
            .any()
        );
    }
}
