from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Gatehouse portal"

    def ready(self):
        from portal import audit

        audit.connect_signals()
