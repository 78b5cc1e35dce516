//! The hot cache of recent search pages (moka), bounded by size and time.
//!
//! A page's key includes how far the index has got (`indexed` seq) and what
//! retention has deleted (`purged` seq): any write that changes what a
//! search would return changes the key, so a stale page is never served and
//! simply ages out.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;

use super::index::{After, SearchQuery};
use crate::model::Event;
use crate::telemetry::metric;

/// Memory bound of the cache (approximate bytes of cached events).
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// A page is dropped this long after it was cached.
const TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    text: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<After>,
    limit: usize,
    indexed: u64,
    purged: u64,
}

/// One page of search results.
#[derive(Debug)]
pub struct Page {
    pub total: usize,
    pub events: Vec<Event>,
    /// More hits follow this page.
    pub more: bool,
}

pub struct SearchCache {
    pages: Cache<Key, Arc<Page>>,
}

impl Default for SearchCache {
    fn default() -> Self {
        let pages = Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|_, page: &Arc<Page>| {
                let bytes: usize = page
                    .events
                    .iter()
                    .map(|e| 256 + e.message.len() + e.original.as_ref().map_or(0, String::len))
                    .sum();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(TTL)
            .build();
        SearchCache { pages }
    }
}

impl SearchCache {
    /// The cached page for `q` at this index state, or `search()`'s result
    /// (which is then cached).
    pub fn get_or_search<E>(
        &self,
        q: &SearchQuery,
        indexed: u64,
        purged: u64,
        search: impl FnOnce() -> Result<Page, E>,
    ) -> Result<Arc<Page>, E> {
        let key = Key {
            text: q
                .text
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            from: q.from,
            to: q.to,
            after: q.after,
            limit: q.limit,
            indexed,
            purged,
        };
        if let Some(page) = self.pages.get(&key) {
            metrics::counter!(metric::CACHE_REQUESTS, "cache" => "search", "result" => "hit")
                .increment(1);
            return Ok(page);
        }
        metrics::counter!(metric::CACHE_REQUESTS, "cache" => "search", "result" => "miss")
            .increment(1);
        let page = Arc::new(search()?);
        self.pages.insert(key, page.clone());
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize) -> Page {
        Page {
            total: n,
            events: (0..n)
                .map(|i| Event {
                    seq: i as u64,
                    ..Event::default()
                })
                .collect(),
            more: false,
        }
    }

    #[test]
    fn hits_until_the_index_moves() {
        let cache = SearchCache::default();
        let q = SearchQuery {
            text: Some("x".into()),
            limit: 10,
            ..Default::default()
        };
        let mut calls = 0;
        let mut get = |indexed, purged| {
            cache
                .get_or_search(&q, indexed, purged, || {
                    calls += 1;
                    Ok::<_, ()>(page(calls))
                })
                .unwrap()
                .total
        };
        assert_eq!(get(5, 0), 1);
        assert_eq!(get(5, 0), 1, "same index state: served from the cache");
        assert_eq!(get(6, 0), 2, "new events indexed: searched again");
        assert_eq!(get(6, 3), 3, "retention deleted events: searched again");
    }

    #[test]
    fn each_cursor_is_its_own_page() {
        let cache = SearchCache::default();
        let at = |seq| {
            Some(After {
                timestamp_micros: 1,
                seq,
            })
        };
        let mut calls = 0;
        let mut get = |after| {
            let q = SearchQuery {
                after,
                limit: 10,
                ..Default::default()
            };
            cache
                .get_or_search(&q, 5, 0, || {
                    calls += 1;
                    Ok::<_, ()>(page(calls))
                })
                .unwrap()
                .total
        };
        assert_eq!(get(None), 1);
        assert_eq!(get(at(7)), 2);
        assert_eq!(get(at(3)), 3);
        assert_eq!(get(at(7)), 2, "the same cursor: the cached page");
    }

    #[test]
    fn errors_are_not_cached() {
        let cache = SearchCache::default();
        let q = SearchQuery::default();
        assert!(
            cache
                .get_or_search(&q, 1, 0, || Err::<Page, _>("boom"))
                .is_err()
        );
        let got = cache
            .get_or_search(&q, 1, 0, || Ok::<_, &str>(page(2)))
            .unwrap();
        assert_eq!(got.total, 2);
    }
}
