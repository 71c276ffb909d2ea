from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers and agents"

    def ready(self) -> None:
        from workers.registry import agents_load

        agents_load()
