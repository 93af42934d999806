"""Portal pages: server-rendered Jinja2 templates with htmx partials."""

from cryovault.web.ui import (
    admin_pages,
    auth_pages,
    content_pages,
    dashboard_pages,
    element_actions,
    job_pages,
    run_pages,
    search_pages,
    settings_pages,
    sharing_pages,
    storage_pages,
    viewer_pages,
    workspace_pages,
)

routers = [job_pages.router, auth_pages.router, workspace_pages.router, element_actions.router,
           sharing_pages.router, dashboard_pages.router, storage_pages.router,
           content_pages.router, search_pages.router, viewer_pages.router, admin_pages.router,
           settings_pages.router, run_pages.router]
