from django.apps import AppConfig


class ApiaccessConfig(AppConfig):
    name = "apiaccess"
    verbose_name = "API access: keys and accounts"
