"""Portal pages: server-rendered Jinja2 templates with htmx partials."""

from cryovault.web.ui import (
    auth_pages,
    dashboard_pages,
    element_actions,
    sharing_pages,
    storage_pages,
    workspace_pages,
)

routers = [auth_pages.router, workspace_pages.router, element_actions.router,
           sharing_pages.router, dashboard_pages.router, storage_pages.router]
