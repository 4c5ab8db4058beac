"""The Telegram frontend: aiogram routers, keyboards, middlewares and the streaming answer renderer."""
