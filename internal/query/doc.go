// Package query answers reads of the audit trail: it turns request parameters
// into store filters, pages with opaque keyset cursors, and decides when a
// total can be counted exactly.
//
// Keyset cursors encode the (event_timestamp, event_id) of the last row of a
// page, so the next page starts with an index seek: page 10,000 costs what page
// 1 costs. Offset paging is kept for older clients.
//
// Totals are counted up to [CountCap] matches. Below that the count is exact;
// above it the response says total_is_exact=false and gives a lower bound,
// because an exact COUNT(*) over millions of rows would cost more than the page.
package query
