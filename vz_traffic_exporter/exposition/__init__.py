"""Exposition: metric families built at scrape time, served over HTTP."""
