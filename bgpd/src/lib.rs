//! bgpd: work in progress; see the open issues.
