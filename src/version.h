/*
 * version.h: the version string every binary prints with -V.
 */

#ifndef TAP_VERSION_H
#define TAP_VERSION_H

#include "config.h"

#define TAP_VERSION  PACKAGE_VERSION

#endif /* TAP_VERSION_H */
