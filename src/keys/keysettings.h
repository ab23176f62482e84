/*-------------------------------------------------------------------------
 *
 * keysettings.h
 *	  The key provider's settings: vecphi.key_directory,
 *	  vecphi.kek_command, vecphi.kek_destroy_command.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_KEYSETTINGS_H
#define VECPHI_KEYSETTINGS_H

extern char *vecphi_key_directory;
extern char *vecphi_kek_command;
extern char *vecphi_kek_destroy_command;

extern void keys_settings_init(void);

#endif							/* VECPHI_KEYSETTINGS_H */
