"""bcls.pipeline"""
