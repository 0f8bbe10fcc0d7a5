from django.apps import AppConfig


class ApiaccessConfig(AppConfig):
    name = "apiaccess"
    verbose_name = "API access: keys and accounts"

    def ready(self):
        from apiaccess import signals

        signals.connect_user_signals()
