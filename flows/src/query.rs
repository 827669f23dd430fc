//! Requests of the `Flows` service checked and resolved against a time
//! (`now`): [`ListQuery`], [`HintsQuery`], [`StreamQuery`]. Times follow
//! Goldmane: 0 is "the oldest held" for a lower bound and "now" for an upper
//! one, a positive value seconds since the Unix epoch, a negative one
//! seconds before `now`. Anything a client can get wrong (unknown enum
//! numbers, negative or huge pages, an empty range) is an
//! [`InvalidRequest`], which the server answers with InvalidArgument.

use crate::filter::Filter;
use crate::proto;

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("{field}: {value} is not a value of the enum")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("start_time_gte ({gte}) must be before start_time_lt ({lt})")]
    EmptyTimeRange { gte: i64, lt: i64 },
    #[error("page_size {0} is out of range 0..={MAX_PAGE_SIZE}")]
    PageSize(i64),
    #[error("page {0} is out of range (negative, or beyond any result)")]
    Page(i64),
    #[error("sort_by: at most one sort option is supported, got {0}")]
    SortOptions(usize),
    #[error("type: FilterTypeUnspecified names no field")]
    HintType,
}

/// A proto enum field's value, refused when the number is none of its.
pub fn enum_value<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<E, InvalidRequest> {
    E::try_from(value).map_err(|_| InvalidRequest::UnknownEnum { field, value })
}

/// Buckets whose start is in `[gte, lt)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub gte: i64,
    pub lt: i64,
}

impl TimeRange {
    fn resolve(now: i64, gte: i64, lt: i64) -> Result<TimeRange, InvalidRequest> {
        let gte = match gte {
            0 => i64::MIN,
            t if t < 0 => now.saturating_add(t),
            t => t,
        };
        let lt = match lt {
            0 => now.saturating_add(1),
            t if t < 0 => now.saturating_add(t),
            t => t,
        };
        if gte >= lt {
            return Err(InvalidRequest::EmptyTimeRange { gte, lt });
        }
        Ok(TimeRange { gte, lt })
    }

    pub fn contains(&self, t: i64) -> bool {
        self.gte <= t && t < self.lt
    }
}

/// `size` 0 means everything, on one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub number: usize,
    pub size: usize,
}

impl Page {
    fn of(page: i64, size: i64) -> Result<Page, InvalidRequest> {
        if !(0..=MAX_PAGE_SIZE).contains(&size) {
            return Err(InvalidRequest::PageSize(size));
        }
        if page < 0
            || page
                .checked_mul(size)
                .is_none_or(|first| first > i64::from(u32::MAX))
        {
            return Err(InvalidRequest::Page(page));
        }
        let number = usize::try_from(page).map_err(|_| InvalidRequest::Page(page))?;
        let size = usize::try_from(size).map_err(|_| InvalidRequest::PageSize(size))?;
        Ok(Page { number, size })
    }

    /// This page of `items`, and the list's metadata.
    pub fn cut<T>(&self, mut items: Vec<T>) -> (Vec<T>, proto::ListMetadata) {
        let total = items.len();
        let pages = match (total, self.size) {
            (0, _) => 0,
            (_, 0) => 1,
            (t, s) => t.div_ceil(s),
        };
        let meta = proto::ListMetadata {
            total_pages: i64::try_from(pages).unwrap_or(i64::MAX),
            total_results: i64::try_from(total).unwrap_or(i64::MAX),
        };
        if self.size == 0 {
            return (items, meta);
        }
        let first = self.number.saturating_mul(self.size).min(total);
        let last = first.saturating_add(self.size).min(total);
        items.truncate(last);
        (items.split_off(first), meta)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Newest start first.
    Time,
    DestName,
    DestNamespace,
    DestType,
    SourceName,
    SourceNamespace,
    SourceType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub range: TimeRange,
    pub filter: Filter,
    pub sort: SortBy,
    pub page: Page,
}

impl ListQuery {
    pub fn from_proto(now: i64, req: &proto::FlowListRequest) -> Result<ListQuery, InvalidRequest> {
        let sort = match req.sort_by.as_slice() {
            [] => SortBy::Time,
            [one] => match enum_value("sort_by", one.sort_by)? {
                proto::SortBy::Time => SortBy::Time,
                proto::SortBy::DestName => SortBy::DestName,
                proto::SortBy::DestNamespace => SortBy::DestNamespace,
                proto::SortBy::DestType => SortBy::DestType,
                proto::SortBy::SourceName => SortBy::SourceName,
                proto::SortBy::SourceNamespace => SortBy::SourceNamespace,
                proto::SortBy::SourceType => SortBy::SourceType,
            },
            more => return Err(InvalidRequest::SortOptions(more.len())),
        };
        Ok(ListQuery {
            range: TimeRange::resolve(now, req.start_time_gte, req.start_time_lt)?,
            filter: Filter::from_proto(req.filter.as_ref())?,
            sort,
            page: Page::of(req.page, req.page_size)?,
        })
    }
}

/// The field a hints request asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintField {
    DestName,
    SourceName,
    DestNamespace,
    SourceNamespace,
    PolicyTier,
    PolicyName,
    PolicyKind,
    PolicyNamespace,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HintsQuery {
    pub field: HintField,
    pub range: TimeRange,
    pub filter: Filter,
    pub page: Page,
}

impl HintsQuery {
    pub fn from_proto(
        now: i64,
        req: &proto::FilterHintsRequest,
    ) -> Result<HintsQuery, InvalidRequest> {
        use proto::FilterType as T;
        let field = match enum_value("type", req.r#type)? {
            T::Unspecified => return Err(InvalidRequest::HintType),
            T::DestName => HintField::DestName,
            T::SourceName => HintField::SourceName,
            T::DestNamespace => HintField::DestNamespace,
            T::SourceNamespace => HintField::SourceNamespace,
            T::PolicyTier => HintField::PolicyTier,
            T::PolicyName => HintField::PolicyName,
            T::PolicyKind => HintField::PolicyKind,
            T::PolicyNamespace => HintField::PolicyNamespace,
        };
        Ok(HintsQuery {
            field,
            range: TimeRange::resolve(now, req.start_time_gte, req.start_time_lt)?,
            filter: Filter::from_proto(req.filter.as_ref())?,
            page: Page::of(req.page, req.page_size)?,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamQuery {
    /// Send the buckets since this time first; `None`: only what comes.
    pub since: Option<i64>,
    pub filter: Filter,
}

impl StreamQuery {
    pub fn from_proto(
        now: i64,
        req: &proto::FlowStreamRequest,
    ) -> Result<StreamQuery, InvalidRequest> {
        let since = match req.start_time_gte {
            0 => None,
            t if t < 0 => Some(now.saturating_add(t)),
            t => Some(t),
        };
        Ok(StreamQuery {
            since,
            filter: Filter::from_proto(req.filter.as_ref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn zero_times_are_everything_until_now_and_negative_ones_are_before_now() {
        let r = TimeRange::resolve(NOW, 0, 0).expect("valid");
        assert!(r.contains(0) && r.contains(NOW) && !r.contains(NOW + 1));
        let r = TimeRange::resolve(NOW, -60, -15).expect("valid");
        assert_eq!(
            r,
            TimeRange {
                gte: NOW - 60,
                lt: NOW - 15
            }
        );
        let r = TimeRange::resolve(NOW, NOW - 30, 0).expect("valid");
        assert_eq!(r.gte, NOW - 30);
    }

    #[test]
    fn an_empty_time_range_is_refused() {
        assert_eq!(
            TimeRange::resolve(NOW, -10, -20),
            Err(InvalidRequest::EmptyTimeRange {
                gte: NOW - 10,
                lt: NOW - 20
            })
        );
    }

    #[test]
    fn pages_cut_the_list_and_count_it_whole() {
        let page = Page::of(1, 2).expect("valid");
        let (items, meta) = page.cut(vec![1, 2, 3, 4, 5]);
        assert_eq!(items, [3, 4]);
        assert_eq!((meta.total_pages, meta.total_results), (3, 5));
        let (items, meta) = Page::of(7, 2).expect("valid").cut(vec![1, 2, 3]);
        assert!(items.is_empty());
        assert_eq!((meta.total_pages, meta.total_results), (2, 3));
        let (items, meta) = Page::of(0, 0).expect("valid").cut(vec![1, 2, 3]);
        assert_eq!((items.len(), meta.total_pages), (3, 1));
        let (_, meta) = Page::of(0, 0).expect("valid").cut(Vec::<u8>::new());
        assert_eq!((meta.total_pages, meta.total_results), (0, 0));
    }

    #[test]
    fn negative_or_huge_pages_are_refused() {
        assert_eq!(Page::of(0, -1), Err(InvalidRequest::PageSize(-1)));
        assert_eq!(
            Page::of(0, MAX_PAGE_SIZE + 1),
            Err(InvalidRequest::PageSize(MAX_PAGE_SIZE + 1))
        );
        assert_eq!(Page::of(-1, 10), Err(InvalidRequest::Page(-1)));
        assert_eq!(Page::of(i64::MAX, 10), Err(InvalidRequest::Page(i64::MAX)));
    }

    #[test]
    fn unknown_enum_numbers_and_two_sort_options_are_refused() {
        let req = proto::FlowListRequest {
            sort_by: vec![proto::SortOption { sort_by: 42 }],
            ..Default::default()
        };
        assert_eq!(
            ListQuery::from_proto(NOW, &req),
            Err(InvalidRequest::UnknownEnum {
                field: "sort_by",
                value: 42
            })
        );
        let req = proto::FlowListRequest {
            sort_by: vec![proto::SortOption::default(); 2],
            ..Default::default()
        };
        assert_eq!(
            ListQuery::from_proto(NOW, &req),
            Err(InvalidRequest::SortOptions(2))
        );
        let req = proto::FlowListRequest {
            filter: Some(proto::Filter {
                actions: vec![9],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            ListQuery::from_proto(NOW, &req),
            Err(InvalidRequest::UnknownEnum {
                field: "filter.actions",
                value: 9
            })
        );
        let req = proto::FilterHintsRequest::default();
        assert_eq!(
            HintsQuery::from_proto(NOW, &req),
            Err(InvalidRequest::HintType)
        );
    }
}
