"""Reports: in/out per line, average and peak occupancy and mean dwell per zone, by the device's
local hour or day, from the counting stage's series and their rollups. rva.reports.calendar
makes the buckets, rva.reports.series reads them, rva.reports.export writes CSV and tables;
`GET /api/report` (rva.services.web.report_view) and `rva report` (rva.cli.report) serve them.
"""
