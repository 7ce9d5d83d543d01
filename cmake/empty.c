/* Placeholder so a module library exists before its first source file. */
typedef int shoal_empty_unit;
