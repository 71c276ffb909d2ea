"""The dashboard: server-rendered pages over the same selectors and services as the REST API.

Python picks the data (``selectors``, ``graph``, ``timeline``, ``event_log``) and the views
in ``pages`` hand it to the templates under ``templates/jobs/``, which render the HTML and SVG.
"""
