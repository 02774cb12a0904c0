//! Docker Hub's pull rate limit: responses carry `ratelimit-limit: 100;w=21600` and
//! `ratelimit-remaining: 76;w=21600`; ferry remembers the last figures and, when the
//! allowance is about to run out, pauses manifest fetches for the time one pull takes
//! to come back instead of burning the last pulls and meeting 429s mid-copy.

use std::{sync::Mutex, time::Duration};

use reqwest::Response;

/// The longest single pause.
const MAX_PAUSE: Duration = Duration::from_secs(300);
/// Pulls kept in reserve.
const RESERVE: u64 = 1;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    limit: u64,
    remaining: u64,
    window: u64,
}

/// The last rate-limit figures one registry reported.
#[derive(Debug, Default)]
pub(super) struct RateLimit {
    figures: Mutex<Option<Figures>>,
}

fn parse(value: &str) -> Option<(u64, u64)> {
    let (count, rest) = value.split_once(';').unwrap_or((value, ""));
    let window = rest
        .split(';')
        .find_map(|p| p.trim().strip_prefix("w="))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    Some((count.trim().parse().ok()?, window))
}

impl RateLimit {
    /// Records the figures a response carries, if any.
    pub(super) fn observe(&self, response: &Response) {
        let header = |name| response.headers().get(name)?.to_str().ok().and_then(parse);
        let Some((remaining, window)) = header("ratelimit-remaining") else {
            return;
        };
        let limit = header("ratelimit-limit").map_or(0, |(limit, _)| limit);
        *self.figures.lock().expect("rate limit lock") = Some(Figures {
            limit,
            remaining,
            window,
        });
    }

    /// How long to wait before the next pull, if the allowance is nearly spent.
    pub(super) fn pause(&self) -> Option<Duration> {
        let figures = (*self.figures.lock().expect("rate limit lock"))?;
        if figures.remaining > RESERVE || figures.limit == 0 || figures.window == 0 {
            return None;
        }
        Some(Duration::from_secs(figures.window / figures.limit).min(MAX_PAUSE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_hub_headers() {
        assert_eq!(parse("76;w=21600"), Some((76, 21600)));
        assert_eq!(parse("100"), Some((100, 0)));
        assert_eq!(parse("x;w=1"), None);
        let limit = RateLimit::default();
        assert_eq!(limit.pause(), None);
        *limit.figures.lock().unwrap() = Some(Figures {
            limit: 100,
            remaining: 1,
            window: 21600,
        });
        assert_eq!(limit.pause(), Some(Duration::from_secs(216)));
    }
}
