from django.contrib.admin.apps import AdminConfig


class ClearhouseAdminConfig(AdminConfig):
    default_site = "config.admin_site.ClearhouseAdminSite"
