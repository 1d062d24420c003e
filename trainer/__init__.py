"""bcls.trainer"""
