"""Who may do what: accounts, sessions, tokens, roles, sharing and the visibility rules.

Every permission decision of the platform is made by a function of this package.
"""
