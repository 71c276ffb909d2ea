from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"

    def ready(self) -> None:
        from jobs.lifecycle import job_finished

        job_finished.connect(remember_finished_job, dispatch_uid="memory.remember_finished_job")


def remember_finished_job(sender, *, job_id, status, remember, **kwargs) -> None:
    """A job submitted with ``"remember": true`` stores its outputs as its owner's
    memories once it has succeeded (after commit, so a Chroma outage can never undo the
    job's success)."""
    from jobs.models import JobStatus
    from memory.services import memory_remember_job

    if remember and status == JobStatus.SUCCEEDED:
        memory_remember_job(job_id=job_id)
