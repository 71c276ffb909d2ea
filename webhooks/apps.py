from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from jobs.services import job_submitted

        job_submitted.connect(job_notify_from_spec, dispatch_uid="webhooks.job_notify_from_spec")


def job_notify_from_spec(sender, *, job, spec: dict, **kwargs) -> None:
    """A job submitted with ``"notify": {"url", "events"?, "secret"?}``: validate it (an SSRF
    check included) and store it with the job, in the submission's transaction; a bad one
    is a 400 naming the field, and the job is not written."""
    if not spec.get("notify"):
        return
    from core.errors import ApplicationError, flatten_errors
    from webhooks.serializers import NotifyInputSerializer
    from webhooks.services import job_notify_create

    serializer = NotifyInputSerializer(data=spec["notify"])
    if not serializer.is_valid():
        fields = flatten_errors(serializer.errors, "notify")
        path, messages = next(iter(fields.items()))
        raise ApplicationError(f"{path}: {messages[0]}", code="invalid_notify", fields=fields)
    job_notify_create(job=job, notify=serializer.validated_data)
