"""Human in the loop: review gates (gates), what humans decide (decisions), what the
agent is told (context), and their API, pages, live inbox and admin.

Gates are held and released by the job lifecycle (jobs.lifecycle); this package owns
the Review rows and what a decision means."""
